"""The canonical JSON device payload, shared by the MQTT, HTTP and CoAP connectors.

A payload is ``{"ts": <epoch ms>, "values": {"name": number|bool|string, ...}}`` or a JSON list of such
objects. ``ts`` is optional (receive time is used). Each object is checked on its own, so one bad reading
never costs the good ones next to it.

``parse`` is total (adr/0103): whatever the bytes, it returns readings and rejects and never raises. Every
reject carries a stable code from ``REASON_CODES`` and a non-empty, bounded, readable reason. A reading that
comes out is finite and well-typed: event time an int of epoch ms, values finite floats, bools or strings
that encode as UTF-8, so nothing downstream (the Avro encoder, ClickHouse) can fail on it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.limits import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

MAX_VALUES = 256
MAX_NAME_LEN = 128
MAX_STRING_LEN = 4096
MAX_REASON_LEN = 500
MIN_TS_MS = 946684800000  # 2000-01-01: older device clocks are unset, not historical

# Every code a parser here can give a reject (the dead letter's reason_code).
REASON_CODES = frozenset({
    "oversize", "invalid_json", "too_deep", "wrong_type", "out_of_range", "invalid_text", "bad_metric_name",
    "bad_timestamp", "clock_skew", "invalid_payload"})


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x (one per reading, adr/0215)
class Reading:
    event_time: int
    values: dict[str, float | bool | str]


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str
    reason: str
    raw: bytes


class Refused(ValueError):
    """A reading refused with a stable ``code`` and a readable ``reason``."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


def short(value: Any, limit: int = 40) -> str:
    """A value for a reason text: repr (which escapes lone surrogates and control characters), cut short."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails (e.g. an int past Python's digit limit) must not fail the verdict
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def parse(raw: bytes, received_ms: int, max_skew_ms: int) -> tuple[list[Reading], list[Rejected]]:
    if len(raw) > MAX_PAYLOAD_BYTES:
        reason = f"payload is {len(raw)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        return [], [Rejected("oversize", reason, raw)]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson is stricter than json (NaN, integers past 64 bits, lone surrogates, UTF-16, nesting past
        # 1024): json decides, so every payload is judged, and rejects worded, by the checks below (rare path)
        try:
            doc = json.loads(raw)
        except RecursionError:
            return [], [Rejected("too_deep", "payload nests JSON arrays/objects too deeply to be a reading",
                                 raw)]
        except (UnicodeDecodeError, ValueError) as exc:
            return [], [Rejected("invalid_json", f"payload is not valid UTF-8 JSON: {short(str(exc), 200)}",
                                 raw)]
    return parse_document(doc, raw, received_ms, max_skew_ms)


def parse_document(doc: Any, raw: bytes, received_ms: int,
                   max_skew_ms: int) -> tuple[list[Reading], list[Rejected]]:
    """Readings of an already decoded document (JSON, or CBOR in the CoAP connector): never raises."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        return [], [Rejected("wrong_type", "an empty list holds no readings", raw)]
    readings, rejected = [], []
    for item in items:
        try:
            readings.append(_reading(item, received_ms, max_skew_ms))
        except Refused as exc:
            rejected.append(Rejected(exc.code, exc.reason[:MAX_REASON_LEN], _item_raw(item, raw, len(items))))
        except Exception as exc:  # a check here that is missing: still a verdict, and a log line to fix it
            log.warning("unexpected %s judging a reading", type(exc).__name__, exc_info=True)
            reason = f"the reading could not be read ({type(exc).__name__})"
            rejected.append(Rejected("invalid_payload", reason, _item_raw(item, raw, len(items))))
    return readings, rejected


def _item_raw(item: Any, raw: bytes, n_items: int) -> bytes:
    if n_items == 1:
        return raw
    try:  # ensure_ascii (the default) escapes lone surrogates; NaN/Infinity are written as json reads them
        return json.dumps(item, separators=(",", ":"), default=repr).encode()
    except Exception:  # e.g. RecursionError on an item nested near the limit: keep the whole payload
        return raw


def _text(s: str, what: str) -> None:
    try:
        s.encode()
    except UnicodeEncodeError:
        raise Refused("invalid_text", f"{what} holds a lone UTF-16 surrogate (not Unicode text)") from None


def _reading(item: Any, received_ms: int, max_skew_ms: int) -> Reading:
    if not isinstance(item, dict):
        raise Refused("wrong_type", "a reading must be a JSON object with 'values'")
    values = item.get("values")
    if not isinstance(values, dict) or not values:
        raise Refused("wrong_type", "'values' must be a non-empty object of metric → value")
    if len(values) > MAX_VALUES:
        raise Refused("oversize", f"{len(values)} values in one reading; the limit is {MAX_VALUES}")
    clean: dict[str, float | bool | str] = {}
    for name, v in values.items():
        if type(name) is not str:  # JSON keys always are; CBOR maps may use any key
            raise Refused("bad_metric_name", f"metric name {short(name)} must be a string")
        if not name or len(name) > MAX_NAME_LEN:
            raise Refused("bad_metric_name", f"metric name {short(name)} must be 1–{MAX_NAME_LEN} chars")
        if type(v) is float and v - v == 0.0:  # the common case first; v - v is nan for ±inf and nan
            clean[name] = v
        elif isinstance(v, bool):
            clean[name] = v
        elif isinstance(v, (int, float)):
            try:
                f = float(v)
            except OverflowError:  # an integer past the largest double (e.g. 400 digits)
                raise Refused("out_of_range", f"{short(name)} is beyond the range of a double") from None
            if not math.isfinite(f):
                raise Refused("wrong_type", f"{short(name)} is not a finite number")
            clean[name] = f
        elif isinstance(v, str):
            if len(v) > MAX_STRING_LEN:
                raise Refused("oversize", f"{short(name)} string longer than {MAX_STRING_LEN}")
            _text(v, f"the value of {short(name)}")
            clean[name] = v
        else:
            raise Refused("wrong_type", f"{short(name)} must be a number, boolean or string, "
                          f"not {type(v).__name__}")
        if not name.isascii():  # metric names are almost always ASCII: check the rest only then
            _text(name, "a metric name")
    ts = item.get("ts")
    if ts is None:
        return Reading(received_ms, clean)
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise Refused("wrong_type", "'ts' must be epoch milliseconds")
    if isinstance(ts, float) and not math.isfinite(ts):
        raise Refused("bad_timestamp", f"'ts' is {ts}, not a finite number of epoch milliseconds")
    ts = int(ts)
    if ts < MIN_TS_MS:
        raise Refused("bad_timestamp", f"ts {short(ts)} is before 2000-01-01 (is it seconds, not ms?)")
    if ts > received_ms + max_skew_ms:
        ahead = short(ts - received_ms)
        raise Refused("clock_skew", f"ts {short(ts)} is {ahead} ms ahead of the platform clock")
    return Reading(ts, clean)
