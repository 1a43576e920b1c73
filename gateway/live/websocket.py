"""WebSocket ``/v1/stream``: a tenant's live telemetry, alerts and device events (adr/0063).

Protocol (JSON text frames):

- authenticate with ``?access_token=…`` or, within 10 s, a first message ``{"type": "auth", "token": …}``;
  a bad token closes with 4401, a token without ``telemetry:read`` with 4403. The server then says
  ``{"type": "ready", "tenant_id": …}``.
- ``{"type": "subscribe", "id": "s1", "devices": [...], "metrics": [...], "kinds": ["telemetry", "alert",
  "device_event"]}``: every field but ``id`` optional (absent = all). Answer ``{"type": "subscribed", "id"}``.
  ``{"type": "unsubscribe", "id": "s1"}`` → ``{"type": "unsubscribed", "id"}``.
- events: ``{"type": "telemetry", "device_id", "ts", "values", "subscriptions": ["s1"]}`` (alerts and device
  events alike); ``metrics`` narrows ``values`` to the metrics asked for.
- slow clients: at most ``live_queue_size`` events wait for a connection; newer ones are dropped and the
  client gets ``{"type": "dropped", "count": n}`` when it catches up (live data is best-effort; history is
  the REST/GraphQL queries' job).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway.api.deps import HubDep, KeysDep
from gateway.auth.sessions import SESSION_COOKIE
from gateway.errors import ApiError

from .auth import bearer, principal_from_token, same_origin
from .hub import LiveEvent, Subscriber, to_json

router = APIRouter(tags=["live"])

KIND_NAMES = ("telemetry", "alert", "device_event")
MAX_SUBSCRIPTIONS = 100


@dataclass
class Subscription:
    devices: frozenset[str] | None
    metrics: frozenset[str] | None
    kinds: frozenset[str]

    def wants(self, ev: LiveEvent) -> bool:
        if ev.kind not in self.kinds or (self.devices is not None and ev.device_id not in self.devices):
            return False
        return ev.kind != "telemetry" or self.metrics is None or not self.metrics.isdisjoint(ev.record["values"])


class Connection:
    def __init__(self):
        self.subs: dict[str, Subscription] = {}

    def matches(self, ev: LiveEvent) -> bool:
        return any(s.wants(ev) for s in self.subs.values())

    def devices(self) -> frozenset[str] | None:
        """Every device some subscription names (None: a subscription wants all of the tenant's)."""
        out: set[str] = set()
        for s in self.subs.values():
            if s.devices is None:
                return None
            out |= s.devices
        return frozenset(out)

    def render(self, ev: LiveEvent) -> dict | None:
        ids = [i for i, s in self.subs.items() if s.wants(ev)]
        if not ids:
            return None
        out = to_json(ev)
        if ev.kind == "telemetry":
            metrics = set().union(*(self.subs[i].metrics or ev.record["values"].keys() for i in ids))
            out["values"] = {k: v for k, v in ev.record["values"].items() if k in metrics}
        out["subscriptions"] = ids
        return out


@router.websocket("/stream")
async def stream(ws: WebSocket, keys: KeysDep, hub: HubDep):
    await ws.accept()
    try:
        token = ws.query_params.get("access_token") or bearer(ws.headers.get("authorization"))
        if token is None and ws.cookies.get(SESSION_COOKIE):
            # a console session (adr/0161): browsers send cookies on any page's WebSocket to this host, so
            # only a page of this origin may use them (no cross-site WebSocket hijacking)
            if not same_origin(ws):
                raise ApiError(403, "cross_origin", "a session's WebSocket must come from this origin")
            token = ws.cookies[SESSION_COOKIE]
        if token is None:
            first = json.loads(await asyncio.wait_for(ws.receive_text(), 10))
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
        principal = principal_from_token(keys, token)
    except ApiError as exc:
        await ws.close(4401 if exc.status == 401 else 4403, exc.message[:120])
        return
    except (TimeoutError, ValueError, WebSocketDisconnect):
        await _close_quietly(ws, 4401, "authenticate with access_token= or a first auth message")
        return

    conn = Connection()
    # no subscription yet: interested in no device, so the hub decodes nothing for this connection
    sub = hub.subscribe(Subscriber(principal.tenant_id, conn.matches, maxsize=hub.queue_size, devices=frozenset()))
    await hub.live()  # an idle hub holds no partitions: "ready" only once it reads for this connection
    await ws.send_json({"type": "ready", "tenant_id": principal.tenant_id})
    writer = asyncio.create_task(_write(ws, sub, conn))
    try:
        while True:
            reply = _handle(conn, await ws.receive_text())
            hub.set_devices(sub, conn.devices())  # before the reply: events from here on are decoded
            await ws.send_json(reply)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(sub)
        writer.cancel()


async def _write(ws: WebSocket, sub: Subscriber, conn: Connection) -> None:
    reported = 0
    try:
        while True:
            batch = await sub.next_batch()
            if sub.dropped > reported:
                await ws.send_json({"type": "dropped", "count": sub.dropped - reported})
                reported = sub.dropped
            for ev in batch:
                out = conn.render(ev)  # subscriptions may have changed since the event was buffered
                if out is not None:
                    await ws.send_json(out)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the reader notices the disconnect and cleans up


def _handle(conn: Connection, text: str) -> dict:
    try:
        msg = json.loads(text)
    except ValueError:
        return _error("invalid_json", "messages are JSON objects")
    if not isinstance(msg, dict) or not isinstance(msg.get("id"), str) or not msg["id"]:
        return _error("invalid_request", "a message needs a type and a non-empty string id")
    if msg.get("type") == "unsubscribe":
        conn.subs.pop(msg["id"], None)
        return {"type": "unsubscribed", "id": msg["id"]}
    if msg.get("type") != "subscribe":
        return _error("invalid_request", "type must be subscribe or unsubscribe")
    if msg["id"] not in conn.subs and len(conn.subs) >= MAX_SUBSCRIPTIONS:
        return _error("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
    try:
        devices, metrics = _names(msg.get("devices")), _names(msg.get("metrics"))
        kinds = _names(msg.get("kinds")) or frozenset(KIND_NAMES)
    except ValueError as exc:
        return _error("invalid_request", str(exc))
    if not kinds <= set(KIND_NAMES):
        return _error("invalid_request", f"kinds are {', '.join(KIND_NAMES)}")
    conn.subs[msg["id"]] = Subscription(devices, metrics, kinds)
    return {"type": "subscribed", "id": msg["id"]}


def _names(v) -> frozenset[str] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or len(v) > 1000:
        raise ValueError("devices, metrics and kinds are lists of at most 1000 strings")
    return frozenset(v)


def _error(code: str, message: str) -> dict:
    return {"type": "error", "error": {"code": code, "message": message}}


async def _close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code, reason)
    except RuntimeError:
        pass
