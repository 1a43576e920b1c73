"""ClickHouse sinks: implement only ``write`` (and ``written_up_to``); batching and commits are BatchingSink's."""

from __future__ import annotations

import logging
import time

from sinks.base import BaseSink

from .client import ClickHouse
from .rows import (
    ALERT_COLUMNS,
    COLUMNS,
    COMMAND_COLUMNS,
    EVENT_COLUMNS,
    alert_row,
    command_row,
    event_row,
    telemetry_rows,
)

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 365


class ClickHouseTelemetrySink(BaseSink):
    """Raw telemetry rows, stamped with the tenant's retention; the rollup views follow every insert.

    :param retention_refresh_s: how often the per-tenant retention table is re-read."""

    def __init__(self, ch: ClickHouse, *, retention_refresh_s: float = 30):
        self.ch = ch
        self._retention: dict[str, int] = {}
        self._retention_at = 0.0
        self._refresh_s = retention_refresh_s

    def write(self, records: list[dict]) -> None:
        retention = self._retention_map()
        rows: list[list] = []
        for rec in records:
            telemetry_rows(rec, rows, retention.get(rec["tenant_id"], DEFAULT_RETENTION_DAYS))
        if rows:
            self.ch.insert("telemetry", rows, COLUMNS)

    def written_up_to(self, committed: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        # The minmax index on kafka_offset keeps this to the granules written since the commit.
        out = {}
        for (topic, partition), offset in committed.items():
            rows = self.ch.query_rows(
                f"SELECT max(kafka_offset), count() FROM {self.ch.database}.telemetry "
                "WHERE kafka_partition = {p:UInt16} AND kafka_offset >= {o:UInt64}", {"p": partition, "o": offset})
            if rows and rows[0][1]:
                out[(topic, partition)] = int(rows[0][0])
        return out

    def _retention_map(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._retention_at > self._refresh_s:
            try:
                self._retention = dict(self.ch.query_rows(
                    f"SELECT tenant_id, argMax(retention_days, updated_at) FROM {self.ch.database}.tenant_retention "
                    "GROUP BY tenant_id"))
            except Exception:  # keep the last known map; retention is stamped again on the next batch
                log.exception("could not read tenant retention")
            self._retention_at = now
        return self._retention


class ClickHouseRecordSink(BaseSink):
    """Device events, alerts or command history: one row per record into a replacing table, so a record
    re-delivered after a crash stays one row under FINAL."""

    TABLES = {
        "device_events": (EVENT_COLUMNS, event_row),
        "alerts": (ALERT_COLUMNS, alert_row),
        "command_history": (COMMAND_COLUMNS, command_row),
    }

    def __init__(self, ch: ClickHouse, table: str):
        self.ch, self.table = ch, table
        self.columns, self.to_row = self.TABLES[table]

    def write(self, records: list[dict]) -> None:
        if records:
            self.ch.insert(self.table, [self.to_row(r) for r in records], self.columns)
