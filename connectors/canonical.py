"""The canonical JSON device payload, shared by the MQTT, HTTP and CoAP connectors.

A payload is ``{"ts": <epoch ms>, "values": {"name": number|bool|string, ...}}`` or a JSON list of such
objects. ``ts`` is optional (receive time is used). Each object is checked on its own, so one bad reading
never costs the good ones next to it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_VALUES = 256
MAX_NAME_LEN = 128
MAX_STRING_LEN = 4096
MIN_TS_MS = 946684800000  # 2000-01-01: older device clocks are unset, not historical


@dataclass(frozen=True, slots=True)
class Reading:
    event_time: int
    values: dict[str, float | bool | str]


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str
    reason: str
    raw: bytes


def parse(raw: bytes, received_ms: int, max_skew_ms: int) -> tuple[list[Reading], list[Rejected]]:
    if len(raw) > MAX_PAYLOAD_BYTES:
        return [], [Rejected("oversize", f"payload is {len(raw)} bytes; the limit is {MAX_PAYLOAD_BYTES}", raw)]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson is stricter than json (NaN, integers past 64 bits, lone surrogates, UTF-16): json decides,
        # so every payload is judged, and every reject worded, exactly as before; this path is the rare one
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            return [], [Rejected("invalid_json", f"payload is not valid UTF-8 JSON: {exc}", raw)]
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        return [], [Rejected("wrong_type", "an empty list holds no readings", raw)]
    readings, rejected = [], []
    for item in items:
        try:
            readings.append(_reading(item, received_ms, max_skew_ms))
        except ValueError as exc:
            code, _, reason = str(exc).partition(": ")
            rejected.append(Rejected(code, reason, json.dumps(item, separators=(",", ":")).encode()
                                     if len(items) > 1 else raw))
    return readings, rejected


def _reading(item: Any, received_ms: int, max_skew_ms: int) -> Reading:
    if not isinstance(item, dict):
        raise ValueError("wrong_type: a reading must be a JSON object with 'values'")
    values = item.get("values")
    if not isinstance(values, dict) or not values:
        raise ValueError("wrong_type: 'values' must be a non-empty object of metric → value")
    if len(values) > MAX_VALUES:
        raise ValueError(f"oversize: {len(values)} values in one reading; the limit is {MAX_VALUES}")
    clean: dict[str, float | bool | str] = {}
    for name, v in values.items():
        if not name or len(name) > MAX_NAME_LEN:
            raise ValueError(f"bad_metric_name: metric name {name[:40]!r} must be 1–{MAX_NAME_LEN} chars")
        if type(v) is float and v - v == 0.0:  # the common case first; v - v is nan for ±inf and nan
            clean[name] = v
        elif isinstance(v, bool):
            clean[name] = v
        elif isinstance(v, (int, float)):
            f = float(v)
            if not math.isfinite(f):
                raise ValueError(f"wrong_type: {name} is not a finite number")
            clean[name] = f
        elif isinstance(v, str):
            if len(v) > MAX_STRING_LEN:
                raise ValueError(f"oversize: {name} string longer than {MAX_STRING_LEN}")
            clean[name] = v
        else:
            raise ValueError(f"wrong_type: {name} must be a number, boolean or string, not {type(v).__name__}")
    ts = item.get("ts")
    if ts is None:
        return Reading(received_ms, clean)
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise ValueError("wrong_type: 'ts' must be epoch milliseconds")
    ts = int(ts)
    if ts < MIN_TS_MS:
        raise ValueError(f"bad_timestamp: ts {ts} is before 2000-01-01 (is it seconds, not ms?)")
    if ts > received_ms + max_skew_ms:
        raise ValueError(f"clock_skew: ts {ts} is {ts - received_ms} ms ahead of the platform clock")
    return Reading(ts, clean)
