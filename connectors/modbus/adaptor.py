"""Modbus wire values ↔ fleetstream records: decoded registers → one reading's values; a command's
engineering value → the registers to write."""

from __future__ import annotations

import json
import math

from ..canonical import Reading, Rejected
from .config import PointConfig
from .plan import ReadBlock
from .registers import DATA_TYPE_SPECS, decode_registers, encode_value


def point_value(point: PointConfig, raw: list) -> float | bool:
    v = decode_registers(raw, point.type, point.byte_order, point.word_order)
    if isinstance(v, bool):
        return v
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


def to_wire(point: PointConfig, value) -> list[int]:
    """Registers (or one bit) for an engineering ``value``: undoes scale and offset; ValueError if it
    cannot be represented."""
    if DATA_TYPE_SPECS[point.type].struct_code is None:
        if not isinstance(value, (bool, int)):
            raise ValueError(f"{point.metric} is a coil: the value must be true/false")
        return encode_value(bool(value), point.type)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{point.metric} needs a number")
    return encode_value((float(value) - point.offset) / point.scale, point.type, point.byte_order, point.word_order)
