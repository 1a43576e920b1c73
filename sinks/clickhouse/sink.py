"""ClickHouse sinks: implement only ``write`` (and ``written_up_to``); batching and commits are BatchingSink's."""

from __future__ import annotations

import logging
import os
import tempfile
import time

from schemas import ValueDeserializationError, codec
from sinks.base import BaseSink

from . import avro_batch
from .client import ClickHouse
from .rows import (
    ALERT_COLUMNS,
    COLUMNS,
    COMMAND_COLUMNS,
    EVENT_COLUMNS,
    alert_row,
    command_row,
    event_row,
    telemetry_columns,
)

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 365


class ClickHouseTelemetrySink(BaseSink):
    """Raw telemetry rows, stamped with the tenant's retention; the rollup views follow every insert.

    With chdb the sink takes the Kafka values undecoded (``raw``): the batch goes to ClickHouse as one Avro
    file and ClickHouse decodes it (``avro_batch``, adr/0065). With a server, or when that insert fails,
    records are decoded here with fastavro and inserted column by column.

    :param retention_refresh_s: how often the per-tenant retention table is re-read.
    :param decode_in_clickhouse: default: with chdb (the file must be readable by the ClickHouse process)."""

    def __init__(self, ch: ClickHouse, *, retention_refresh_s: float = 30, decode_in_clickhouse: bool | None = None):
        self.ch = ch
        self._retention: dict[str, int] = {}
        self._retention_at = 0.0
        self._refresh_s = retention_refresh_s
        self.raw = ch.embedded if decode_in_clickhouse is None else decode_in_clickhouse
        self.fallbacks = 0  # batches the ClickHouse decoder refused, written through fastavro instead

    def write(self, records: list[dict]) -> None:
        cols = telemetry_columns(records, self._retention_map(), DEFAULT_RETENTION_DAYS)
        if cols[0]:
            self.ch.insert_columns("telemetry", cols, COLUMNS)

    def write_raw(self, items: list[tuple[bytes, int, int]]) -> int:
        header = avro_batch.TELEMETRY_HEADER
        good = [it for it in items if it[0].startswith(header)]
        bad = len(items) - len(good)
        if bad:
            log.error("skipping %d records on the telemetry topic that are not telemetry records", bad)
        if not good:
            return bad
        try:
            self._insert_decoded_by_clickhouse(good)
        except Exception as exc:
            # a corrupt body fails the whole insert; nothing of it reached the table if it failed while
            # reading, but ask the table rather than assume, then let fastavro sort good from bad
            log.warning("ClickHouse could not insert the batch as Avro (%s); decoding it in Python", exc)
            self.fallbacks += 1
            bad += self._write_decoded_here(good)
        return bad

    def receive_time(self, value: bytes) -> int | None:
        return avro_batch.receive_time(value)

    def _insert_decoded_by_clickhouse(self, items: list[tuple[bytes, int, int]]) -> None:
        data, _n = avro_batch.container(items)
        retention = self._retention_map()
        fd, path = tempfile.mkstemp(prefix="fleetstream-sink-", suffix=".avro", dir=avro_batch.spool_dir())
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.ch.command(avro_batch.insert_sql(self.ch.database, path),
                            {"rt": list(retention), "rd": list(retention.values()),
                             "default_days": DEFAULT_RETENTION_DAYS})
        finally:
            os.unlink(path)

    def _write_decoded_here(self, items: list[tuple[bytes, int, int]]) -> int:
        done = self._written_within(items)
        tel, records, bad = codec("telemetry"), [], 0
        for value, partition, offset in items:
            if offset <= done.get(partition, -1):
                continue
            try:
                rec = tel.decode(value)
            except ValueDeserializationError as exc:
                bad += 1
                log.error("skipping undecodable telemetry record [%d]@%d: %s", partition, offset, exc)
                continue
            rec["kafka_partition"], rec["kafka_offset"] = partition, offset
            records.append(rec)
        if records:
            self.write(records)
        return bad

    def _written_within(self, items: list[tuple[bytes, int, int]]) -> dict[int, int]:
        """Per partition, the highest offset of this batch already in the table (a batch is written in
        Kafka order per partition, so what landed is a prefix)."""
        bounds: dict[int, list[int]] = {}
        for _v, partition, offset in items:
            b = bounds.setdefault(partition, [offset, offset])
            b[0], b[1] = min(b[0], offset), max(b[1], offset)
        out = {}
        for partition, (lo, hi) in bounds.items():
            rows = self.ch.query_rows(
                f"SELECT max(kafka_offset), count() FROM {self.ch.database}.telemetry WHERE kafka_partition = "
                "{p:UInt16} AND kafka_offset >= {lo:UInt64} AND kafka_offset <= {hi:UInt64}",
                {"p": partition, "lo": lo, "hi": hi})
            if rows and rows[0][1]:
                out[partition] = int(rows[0][0])
        return out

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
