"""Validate agent: connectors' raw telemetry → checked, enriched telemetry for sinks, rules and live clients.

Connectors already parsed the device payload; this stage re-checks what every consumer relies on
(tenant-first identity, event-time skew, value types) whatever connector produced it, enforces the device
registry (unknown, suspended and decommissioned devices' data is refused) and enriches each reading with
its device type and tags. Anything refused goes to the dead-letter topic with a reason (adr/0051).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import faust

from fleetstream.settings import Settings
from schemas import ValueDeserializationError, codec, device_key, topics

from .registry import ACCEPTING, RegistryView

log = logging.getLogger(__name__)

BATCH = 2000
WITHIN_S = 0.02
REGISTRY_WAIT_S = 30
REGISTRY_SYNC_S = 2.0


def check(rec: dict, now_ms: int, max_skew_ms: int) -> tuple[str, str] | None:
    """Returns (code, reason) when the record must not reach consumers."""
    if not rec["tenant_id"] or not rec["device_id"]:
        return "missing_identity", "record has no tenant or device"
    if not rec["values"]:
        return "no_values", "record carries no metric values"
    if rec["event_time"] > now_ms + max_skew_ms:
        return "clock_skew", f"event time {rec['event_time']} is ahead of the platform clock by more than {max_skew_ms} ms"
    for name, v in rec["values"].items():
        if isinstance(v, float) and not math.isfinite(v):
            return "wrong_type", f"{name} is not a finite number"
    return None


def enforce(rec: dict, registry: RegistryView) -> tuple[str, str] | None:
    """Registry check; fills ``device_type`` and ``tags`` in ``rec`` when the device may send.

    A device with no entry is refused only once the view has caught up and the control plane publishes
    entries for that tenant; until then it passes unenriched (a tenant whose devices predate registry
    publishing keeps working, adr/0051)."""
    info = registry.lookup(rec["tenant_id"], rec["device_id"])
    if info is None:
        if registry.caught_up.is_set() and registry.tenant_published(rec["tenant_id"]):
            return "unknown_device", f"device {rec['device_id']!r} is not registered for this tenant"
        return None
    if info.status not in ACCEPTING:
        return f"device_{info.status}", f"device {rec['device_id']!r} is {info.status}; its data is refused"
    rec["device_type"], rec["tags"] = info.device_type, list(info.tags)
    return None


def register(app: faust.App, s: Settings, registry: RegistryView) -> None:
    raw_topic = app.topic(topics.TELEMETRY_RAW.name, key_type=bytes, value_type=bytes)
    out_topic = app.topic(topics.TELEMETRY.name, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(topics.DEAD_LETTER.name, key_type=bytes, value_type=bytes)
    tcodec, dcodec = codec("telemetry"), codec("dead_letter")
    max_skew_ms = s.max_clock_skew_s * 1000

    @app.agent(raw_topic, name="validate")
    async def validate(stream):
        if not await asyncio.to_thread(registry.caught_up.wait, REGISTRY_WAIT_S):
            log.warning("registry view not caught up after %ss; unknown devices pass until it is", REGISTRY_WAIT_S)
        async def route(raw: bytes, rec: dict, key: bytes | None, problem: tuple[str, str] | None, now: int):
            if problem:
                await dlq_topic.send(key=key, value=dcodec.encode(_dead(rec, *problem, raw, now)))
            elif rec["device_type"] is None and not rec["tags"]:
                await out_topic.send(key=key, value=raw)
            else:
                await out_topic.send(key=key, value=tcodec.encode(rec))

        async for batch in stream.take(BATCH, within=WITHIN_S):
            now = time.time_ns() // 1_000_000
            deferred: list[tuple[bytes, dict, bytes | None]] = []
            held: set[bytes | None] = set()  # a device with a deferred record keeps its order behind it
            for raw in batch:
                try:
                    rec = tcodec.decode(raw)
                except ValueDeserializationError as exc:
                    await dlq_topic.send(value=dcodec.encode(_dead(None, "undecodable", str(exc), raw, now)))
                    continue
                problem = check(rec, now, max_skew_ms)
                key = device_key(rec["tenant_id"], rec["device_id"]) if rec["tenant_id"] and rec["device_id"] else None
                if problem is None and key in held:
                    deferred.append((raw, rec, key))
                    continue
                if problem is None:
                    problem = enforce(rec, registry)
                    if problem and problem[0] == "unknown_device":
                        deferred.append((raw, rec, key))
                        held.add(key)
                        continue
                await route(raw, rec, key, problem, now)
            if deferred:
                # A brand-new device's first reading can overtake its registry entry (two independent
                # consumers): catch the view up to the registry topic as it is now, once per batch, before
                # refusing anyone as unknown.
                await asyncio.to_thread(registry.sync, REGISTRY_SYNC_S)
                for raw, rec, key in deferred:
                    await route(raw, rec, key, enforce(rec, registry), now)


def _dead(rec: dict | None, code: str, reason: str, raw: bytes, now: int) -> dict:
    return {"tenant_id": rec["tenant_id"] if rec else None, "device_id": rec["device_id"] if rec else None,
            "source": "streams.validate", "reason_code": code, "reason": reason, "origin": topics.TELEMETRY_RAW.name,
            "time": now, "raw": raw}
