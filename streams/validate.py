"""Validate agent: connectors' raw telemetry → checked telemetry for sinks, rules and live clients.

Connectors already parsed the device payload; this stage re-checks what every consumer relies on
(tenant-first identity, event-time skew, value types) whatever connector produced it, and sends anything
else to the dead-letter topic with a reason. Registry enforcement and enrichment extend it (issue 5).
"""

from __future__ import annotations

import logging
import math
import time

import faust

from fleetstream.settings import Settings
from schemas import ValueDeserializationError, codec, device_key, topics

log = logging.getLogger(__name__)

BATCH = 2000
WITHIN_S = 0.02


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


def register(app: faust.App, s: Settings) -> None:
    raw_topic = app.topic(topics.TELEMETRY_RAW.name, key_type=bytes, value_type=bytes)
    out_topic = app.topic(topics.TELEMETRY.name, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(topics.DEAD_LETTER.name, key_type=bytes, value_type=bytes)
    tcodec, dcodec = codec("telemetry"), codec("dead_letter")
    max_skew_ms = s.max_clock_skew_s * 1000

    @app.agent(raw_topic, name="validate")
    async def validate(stream):
        async for batch in stream.take(BATCH, within=WITHIN_S):
            now = time.time_ns() // 1_000_000
            for raw in batch:
                try:
                    rec = tcodec.decode(raw)
                except ValueDeserializationError as exc:
                    await dlq_topic.send(value=dcodec.encode(_dead(None, "undecodable", str(exc), raw, now)))
                    continue
                problem = check(rec, now, max_skew_ms)
                key = device_key(rec["tenant_id"], rec["device_id"]) if rec["tenant_id"] and rec["device_id"] else None
                if problem:
                    await dlq_topic.send(key=key, value=dcodec.encode(_dead(rec, *problem, raw, now)))
                else:
                    await out_topic.send(key=key, value=raw)


def _dead(rec: dict | None, code: str, reason: str, raw: bytes, now: int) -> dict:
    return {"tenant_id": rec["tenant_id"] if rec else None, "device_id": rec["device_id"] if rec else None,
            "source": "streams.validate", "reason_code": code, "reason": reason, "origin": topics.TELEMETRY_RAW.name,
            "time": now, "raw": raw}
