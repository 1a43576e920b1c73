"""OPC-UA values ↔ fleetstream: a data-change notification → one reading (source timestamp as event
time); a command's JSON value → a Variant of the node's own data type."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from asyncua import ua

from ..canonical import MAX_STRING_LEN, MIN_TS_MS, Reading


class ValueRefused(ValueError):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code


def to_value(value: Any) -> float | bool | str:
    """A reading's value under the canonical payload's rules; ``ValueRefused`` (and only that) otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            raise ValueRefused("out_of_range", "value is beyond the range of a double") from None
        if not math.isfinite(f):
            raise ValueRefused("wrong_type", "value is not a finite number")
        return f
    if isinstance(value, str):
        if len(value) > MAX_STRING_LEN:
            raise ValueRefused("oversize", f"string longer than {MAX_STRING_LEN}")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueRefused("invalid_text", "string holds a lone UTF-16 surrogate") from None
        return value
    raise ValueRefused("wrong_type", f"values of type {type(value).__name__} are not supported")


def event_time(source: dt.datetime | None, received_ms: int, max_skew_ms: int) -> int:
    """The server's source timestamp when it has one and it is sane; receive time otherwise."""
    if source is None:
        return received_ms
    if not isinstance(source, dt.datetime):
        return received_ms
    if source.tzinfo is None:
        source = source.replace(tzinfo=dt.UTC)
    ms = int(source.timestamp() * 1000)
    if ms < MIN_TS_MS:
        return received_ms
    if ms > received_ms + max_skew_ms:
        raise ValueRefused("clock_skew", f"source timestamp is {ms - received_ms} ms ahead of the platform clock")
    return ms


def to_reading(metric: str, value: Any, source: dt.datetime | None, received_ms: int, max_skew_ms: int) -> Reading:
    return Reading(event_time(source, received_ms, max_skew_ms), {metric: to_value(value)})


FLOAT32_MAX = 3.4028234663852886e38
INT_RANGES = {ua.VariantType.SByte: (-2 ** 7, 2 ** 7 - 1), ua.VariantType.Byte: (0, 2 ** 8 - 1),
              ua.VariantType.Int16: (-2 ** 15, 2 ** 15 - 1), ua.VariantType.UInt16: (0, 2 ** 16 - 1),
              ua.VariantType.Int32: (-2 ** 31, 2 ** 31 - 1), ua.VariantType.UInt32: (0, 2 ** 32 - 1),
              ua.VariantType.Int64: (-2 ** 63, 2 ** 63 - 1), ua.VariantType.UInt64: (0, 2 ** 64 - 1)}


def held(value: Any) -> Any:
    """A node's value read back after a write, as JSON can carry it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)


def to_variant(value: Any, variant_type: ua.VariantType) -> ua.Variant:
    """JSON value → the node's type; ValueError when it does not fit (never a silent conversion)."""
    if variant_type == ua.VariantType.Boolean:
        if not isinstance(value, bool):
            raise ValueError("this node needs true/false")
        return ua.Variant(value, variant_type)
    if variant_type in (ua.VariantType.Float, ua.VariantType.Double):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("this node needs a finite number")
        if variant_type == ua.VariantType.Float and abs(value) > FLOAT32_MAX:
            raise ValueError(f"{value!r} does not fit Float (single precision)")
        return ua.Variant(float(value), variant_type)
    if variant_type in INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not representable: this node is {variant_type.name} (whole numbers)")
        lo, hi = INT_RANGES[variant_type]
        if not lo <= int(value) <= hi:
            raise ValueError(f"{value!r} does not fit {variant_type.name} ({lo}..{hi})")
        return ua.Variant(int(value), variant_type)
    if variant_type == ua.VariantType.String:
        if not isinstance(value, str):
            raise ValueError("this node needs a string")
        return ua.Variant(value, variant_type)
    raise ValueError(f"writing {variant_type.name} nodes is not supported")
