"""CoAP payloads ↔ fleetstream: JSON (content-format 50) or CBOR (60) telemetry → the canonical readings;
pending commands → the JSON document an observing device receives."""

from __future__ import annotations

import json
from typing import Any

from .. import canonical
from ..canonical import Reading, Rejected

JSON, CBOR = 50, 60
# Elective, experimental-range option carrying the device JWT: Uri-Query cannot (255-byte limit) and
# elective means proxies that do not know it pass it on (adr/0043)
AUTH_OPTION = 65000


def to_readings(payload: bytes, content_format: int | None, received_ms: int,
                max_skew_ms: int) -> tuple[list[Reading], list[Rejected]]:
    if content_format == CBOR:
        import cbor2

        if len(payload) > canonical.MAX_PAYLOAD_BYTES:
            return [], [Rejected("oversize", f"payload is {len(payload)} bytes; the limit is "
                                 f"{canonical.MAX_PAYLOAD_BYTES}", payload)]
        try:
            doc = cbor2.loads(payload)
        except Exception as exc:  # cbor2 raises several types (depth, EOF, bad UTF-8, tags): all "not CBOR"
            reason = f"payload is not CBOR we can read: {canonical.short(str(exc), 200)}"
            return [], [Rejected("invalid_cbor", reason, payload)]
        # judged as a decoded document, so CBOR's extras (byte strings, tags, bignums, non-string keys)
        # are refused by the same checks as JSON's, reading by reading
        return canonical.parse_document(doc, payload, received_ms, max_skew_ms)
    if content_format not in (None, JSON):
        return [], [Rejected("unsupported_format", f"content-format {content_format} is not JSON (50) or CBOR (60)",
                             payload)]
    return canonical.parse(payload, received_ms, max_skew_ms)


def commands_document(pending: dict[str, dict[str, Any]]) -> bytes:
    return json.dumps({"commands": [
        {"command_id": c["command_id"], "name": c["name"], "params": json.loads(c.get("params_json") or "{}")}
        for c in pending.values()]}, separators=(",", ":")).encode()
