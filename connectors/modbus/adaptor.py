"""Modbus wire values ↔ fleetstream records: decoded registers → one reading's values; a command's
engineering value → the registers to write."""

from __future__ import annotations

import json
import math

from ..canonical import Reading, Rejected
from .config import PointConfig
from .plan import ReadBlock
from .registers import DATA_TYPE_SPECS, Kind, decode_registers, encode_value

# integers beyond this lose digits as a double (a reading's numbers are doubles): refused, not rounded
EXACT_INT = 2 ** 53


def point_value(point: PointConfig, raw: list) -> float | bool | str:
    v = decode_registers(raw, point.type, point.byte_order, point.word_order, bit=point.bit or 0)
    if isinstance(v, (bool, str)):
        return v
    if isinstance(v, int) and abs(v) > EXACT_INT:
        raise ValueError(f"{v} is beyond ±2^53 and cannot be carried exactly as a number")
    return float(v) * point.scale + point.offset


def to_reading(blocks: list[tuple[ReadBlock, list]],
               received_ms: int) -> tuple[Reading | None, list[Rejected]]:
    """Values of every point read; a point that decodes to a non-finite number (NaN from an unset register,
    a scale that overflows) or not at all is refused on its own, never costing the other points."""
    values: dict[str, float | bool] = {}
    bad: list[Rejected] = []
    for block, regs in blocks:
        for p in block.points:
            try:
                v = point_value(p, block.slice_of(p, regs))
            except ValueError as exc:
                bad.append(Rejected("invalid_payload", f"{p.metric}: {exc}", b""))
                continue
            if isinstance(v, float) and not math.isfinite(v):
                bad.append(Rejected("wrong_type", f"{p.metric} decoded to a non-finite number", b""))
                continue
            values[p.metric] = v
    # Modbus carries no device time: the poll time is both event and receive time
    return (Reading(received_ms, values) if values else None), bad


def raw_bytes(unit_id: int, blocks: list[tuple[ReadBlock, list]]) -> bytes:
    """What the dead-letter record keeps as ``raw``: the registers as read, by function and address."""
    return json.dumps({"unit_id": unit_id, "blocks": [
        {"function": b.function.value, "address": b.address, "values": [int(v) for v in regs]}
        for b, regs in blocks]}, separators=(",", ":")).encode()


# how far a raw count computed from an engineering value may be off a whole number and still be that number
# (55.5 / 0.1 is 554.9999999999999 in binary floating point)
RAW_TOLERANCE = 1e-6


def to_wire(point: PointConfig, value) -> list[int]:
    """Registers (or one bit) for an engineering ``value``: undoes scale and offset; ValueError if the device
    cannot hold exactly that value (12.7 to an int16 with scale 1 is refused, never rounded to 13)."""
    spec = DATA_TYPE_SPECS[point.type]
    if spec.kind is Kind.COIL:
        if not isinstance(value, bool):
            raise ValueError(f"{point.metric} is a coil: the value must be true/false")
        return encode_value(value, point.type)
    if spec.kind is Kind.STRING:
        if not isinstance(value, str):
            raise ValueError(f"{point.metric} is text: the value must be a string")
        return encode_value(value, point.type, point.byte_order, length=point.length)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{point.metric} needs a finite number")
    raw = (value - point.offset) / point.scale
    if spec.integer:
        whole = round(raw)
        if abs(raw - whole) > RAW_TOLERANCE * max(1.0, abs(raw)):
            step = abs(point.scale)
            raise ValueError(f"{point.metric}: {value!r} is not representable: {point.type.value} with scale "
                             f"{point.scale:g} and offset {point.offset:g} holds steps of {step:g} "
                             f"(nearest: {whole * point.scale + point.offset:g})")
        raw = int(whole)
    try:
        return encode_value(raw, point.type, point.byte_order, point.word_order)
    except ValueError as exc:
        raise ValueError(f"{point.metric}: {exc}") from None


def read_back(point: PointConfig, raw: list) -> float | bool | str | None:
    """What a point holds after a write, for the command's result; None when it does not decode to a value
    JSON can carry (NaN, a 64-bit count beyond 2^53)."""
    try:
        v = point_value(point, raw)
    except ValueError:
        return None
    return None if isinstance(v, float) and not math.isfinite(v) else v
