"""SSE ``/v1/devices/{id}/events``: one device's live telemetry, alerts and device events (adr/0063).

``text/event-stream``; each event has ``event: telemetry|alert|device_event``, a JSON ``data:`` line and an
``id:`` that names the Kafka position reached on each topic for this device (``t3-1042.a1-17``). A client
that reconnects with ``Last-Event-ID`` gets what it missed, read back from Kafka, before live events resume.
A comment line ``: heartbeat`` goes out every ``heartbeat`` seconds of silence. A client too slow to keep
``live_queue_size`` events buffered is disconnected; its reconnect resumes from its last id, so it loses
nothing Kafka still holds.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from gateway.api.deps import DbDep, HubDep, KeysDep, SettingsDep
from gateway.crud.devices import get_device
from gateway.errors import ApiError, not_found

from .auth import bearer, principal_from_token
from .hub import CODES, KINDS, LiveEvent, Subscriber, to_json
from .replay import replay

router = APIRouter(prefix="/devices", tags=["live"])


def parse_event_id(text: str | None) -> dict[tuple[str, int], int]:
    """``t3-1042.a1-17`` → {(telemetry topic, 3): 1042, (alerts topic, 1): 17}; raises ApiError if malformed."""
    out: dict[tuple[str, int], int] = {}
    if not text:
        return out
    try:
        for part in text.split("."):
            code, rest = part[0], part[1:]
            partition, offset = rest.split("-")
            out[(CODES[code], int(partition))] = int(offset)
    except (KeyError, ValueError, IndexError) as exc:
        raise ApiError(400, "bad_last_event_id", "Last-Event-ID is not one this stream sent") from exc
    return out


def format_event_id(seen: dict[tuple[str, int], int]) -> str:
    return ".".join(f"{KINDS[t][1]}{p}-{o}" for (t, p), o in sorted(seen.items()))


@router.get("/{device_id}/events", summary="Live events of one device (Server-Sent Events; resume with Last-Event-ID)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, 401: {}, 403: {}, 404: {}})
async def device_events(
    request: Request, device_id: str, keys: KeysDep, db: DbDep, hub: HubDep, s: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    access_token: Annotated[str | None, Query(description="for clients that cannot set headers")] = None,
    heartbeat: Annotated[float, Query(ge=1, le=120, description="seconds of silence before a heartbeat")] = 15,
):
    principal = principal_from_token(keys, bearer(authorization) or access_token)
    seen = parse_event_id(last_event_id)

    def exists():
        with db.tenant_tx(principal.tenant_id) as conn:
            return get_device(conn, tenant_id=principal.tenant_id, device_id=device_id) is not None

    if not await run_in_threadpool(exists):
        raise not_found(f"device {device_id!r}")

    tenant = principal.tenant_id
    # subscribe before replaying: events dispatched from here on are buffered; the replay reads up to the
    # high watermark, and what both deliver is sent once (offsets at or below the last sent are skipped)
    sub = hub.subscribe(Subscriber(tenant, lambda ev: ev.device_id == device_id, maxsize=hub.queue_size,
                                   close_on_overflow=True, devices=frozenset((device_id,))))
    # an idle hub holds no partitions: answer once it reads for this client, and before the replay reads its
    # high watermark, so that nothing falls between the two
    try:
        await hub.live()
    except BaseException:
        hub.unsubscribe(sub)
        raise

    async def body():
        try:
            yield "retry: 2000\n\n"
            if seen:
                missed = await asyncio.to_thread(replay, s.kafka, tenant, device_id,
                                                 {tp: o + 1 for tp, o in seen.items()})
                for ev in missed:
                    yield _frame(ev, seen)
            while not sub.overflowed:
                batch = await sub.next_batch(timeout=heartbeat)
                if not batch and not sub.overflowed:
                    if await request.is_disconnected():
                        return
                    yield ": heartbeat\n\n"
                for ev in batch:
                    key = (ev.topic, ev.partition)
                    if ev.offset <= seen.get(key, -1):
                        continue  # already sent by the replay
                    yield _frame(ev, seen)
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _frame(ev: LiveEvent, seen: dict[tuple[str, int], int]) -> str:
    seen[(ev.topic, ev.partition)] = ev.offset
    return f"id: {format_event_id(seen)}\nevent: {ev.kind}\ndata: {json.dumps(to_json(ev), separators=(',', ':'))}\n\n"
