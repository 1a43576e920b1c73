"""The one shape of a dead letter (``fleetstream.dlq``, dead_letter.avsc) for every component that refuses
input: texts Avro can write and bounded, so building the verdict never fails on what it describes."""

from __future__ import annotations

import time

from .keys import device_key

DLQ_MAX_TEXT = 1000  # reason and origin, in characters


def clean_text(text: str, limit: int = DLQ_MAX_TEXT) -> str:
    """``text`` as Avro can write it: lone surrogates escaped, at most ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()


def dead_letter(*, source: str, code: str, reason: str, raw: bytes, tenant_id: str | None = None,
                device_id: str | None = None, origin: str | None = None, time_ms: int | None = None) -> dict:
    reason = reason or "refused without a reason (a platform bug: please report it)"
    return {"tenant_id": tenant_id and clean_text(tenant_id, 200), "device_id": device_id and clean_text(device_id, 200),
            "source": source, "reason_code": clean_text(code or "unknown", 64),
            "origin": origin and clean_text(origin), "reason": clean_text(reason, DLQ_MAX_TEXT + 100),
            "time": time_ms if time_ms is not None else int(time.time() * 1000), "raw": bytes(raw)}


def dead_letter_key(rec: dict) -> bytes | None:
    """The Kafka key of a dead letter: its device's key when it names one, so a device's refusals keep order."""
    return device_key(rec["tenant_id"], rec["device_id"]) if rec["tenant_id"] and rec["device_id"] else None
