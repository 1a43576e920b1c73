"""Batching: points of one unit and function whose registers are contiguous (or within ``max_gap``) are
read with one request, up to the protocol's per-request limit. A block the device refuses is halved until
the refused points are isolated (``halves``, adr/0151)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .config import PointConfig
from .registers import MAX_READ_BITS, MAX_READ_REGISTERS, RegisterType


@dataclass(frozen=True)
class ReadBlock:
    function: RegisterType
    address: int
    count: int
    points: tuple[PointConfig, ...]

    def slice_of(self, point: PointConfig, values: list) -> list:
        start = point.address - self.address
        return values[start:start + point.registers]


def block_of(function: RegisterType, points: Sequence[PointConfig]) -> ReadBlock:
    """One request spanning ``points`` (of one function), however far apart."""
    start = min(p.address for p in points)
    end = max(p.address + p.registers for p in points)
    return ReadBlock(function, start, end - start, tuple(sorted(points, key=lambda p: p.address)))


def halves(block: ReadBlock) -> tuple[ReadBlock, ReadBlock]:
    """A block of two or more points split in two by address, to find the address a device refuses."""
    pts = sorted(block.points, key=lambda p: p.address)
    mid = len(pts) // 2
    return block_of(block.function, pts[:mid]), block_of(block.function, pts[mid:])


def plan_reads(points: Iterable[PointConfig], max_gap: int = 0) -> list[ReadBlock]:
    by_fn: dict[RegisterType, list[PointConfig]] = {}
    for p in points:
        by_fn.setdefault(p.function, []).append(p)
    blocks: list[ReadBlock] = []
    for fn, pts in by_fn.items():
        limit = MAX_READ_BITS if fn.is_bit else MAX_READ_REGISTERS
        pts.sort(key=lambda p: p.address)
        cur: list[PointConfig] = []
        start = end = 0  # end: one past the last register of the block
        for p in pts:
            p_end = p.address + p.registers
            if cur and p.address - end <= max_gap and max(end, p_end) - start <= limit:
                cur.append(p)
                end = max(end, p_end)
                continue
            if cur:
                blocks.append(ReadBlock(fn, start, end - start, tuple(cur)))
            cur, start, end = [p], p.address, p_end
        if cur:
            blocks.append(ReadBlock(fn, start, end - start, tuple(cur)))
    return blocks
