"""Modbus failures as device events: the ``READ_ERROR`` details every read failure carries."""

from __future__ import annotations

from .plan import ReadBlock


def read_error_details(link: str, unit_id: int, block: ReadBlock, error: str) -> dict[str, str]:
    return {"link": link, "unit_id": str(unit_id), "function": block.function.value,
            "address": str(block.address), "count": str(block.count),
            "metrics": ",".join(p.metric for p in block.points), "error": error[:500]}
