"""ClickHouse telemetry sink: implements only ``write``; batching and commits are BatchingSink's."""

from __future__ import annotations

from sinks.base import BaseSink

from .client import ClickHouse
from .rows import COLUMNS, telemetry_rows


class ClickHouseTelemetrySink(BaseSink):
    def __init__(self, ch: ClickHouse):
        self.ch = ch

    def write(self, records: list[dict]) -> None:
        rows: list[list] = []
        for rec in records:
            telemetry_rows(rec, rows)
        if rows:
            self.ch.insert("telemetry", rows, COLUMNS)
