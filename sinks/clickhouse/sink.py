"""ClickHouse sinks: implement ``write`` (and the telemetry sink its rollup upkeep); batching and commits are
BatchingSink's."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable

from runtime import observability as obs
from schemas import ValueDeserializationError, codec
from schemas.wire import peek_string
from sinks.base import BaseSink

from . import avro_batch, rollups
from .client import ClickHouse
from .rows import (
    ALERT_COLUMNS,
    COLUMNS,
    COMMAND_COLUMNS,
    EVENT_COLUMNS,
    REJECTION_COLUMNS,
    alert_row,
    command_row,
    event_row,
    rejection_row,
    telemetry_columns,
)

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 365


class ClickHouseTelemetrySink(BaseSink):
    """Raw telemetry rows, stamped with the tenant's retention; the minute and hour rollups are recomputed
    from them on the sink's thread (``rollups.refresh``, adr/0114) every ``rollup_every_s`` while records
    flow (longer while refreshes are slow: ``rollup_interval``), and as soon as the sink is idle.

    With chdb the sink takes the Kafka values undecoded (``raw``): the batch goes to ClickHouse as one Avro
    file and ClickHouse decodes it (``avro_batch``, adr/0065). With a server, or when that insert fails,
    records are decoded here with fastavro and inserted column by column.

    :param retention_refresh_s: how often the per-tenant retention table is re-read.
    :param decode_in_clickhouse: default: with chdb (the file must be readable by the ClickHouse process).
    :param rollup_every_s: time between rollup refreshes under load (reads are exact either way; this trades
        refresh work against how much recent data reads take from raw); longer while a refresh takes more
        than ``ROLLUP_SHARE`` of it (``rollup_interval``).
    :param on_written: told the (tenant, device) pairs of each insert once it returned (or failed part-way):
        the gateway's latest-values cache (``latest.LatestCache.written``, adr/0185)."""

    def __init__(self, ch: ClickHouse, *, retention_refresh_s: float = 30, decode_in_clickhouse: bool | None = None,
                 rollup_every_s: float = 10, on_written: Callable[[Iterable[tuple[str, str]]], None] | None = None):
        self.ch = ch
        self.on_written = on_written
        self._retention: dict[str, int] = {}
        self._retention_at = 0.0
        self._refresh_s = retention_refresh_s
        self.raw = ch.embedded if decode_in_clickhouse is None else decode_in_clickhouse
        self.fallbacks = 0  # batches the ClickHouse decoder refused, written through fastavro instead
        self.rollup_every_s = rollup_every_s
        self._rolled_at = 0.0
        self._unrolled = True  # written since the last refresh (or unknown: a previous life may have)
        self._refresh_failed = False
        self._last_refresh_s = 0.0
        self.rollup_stats = {"refreshes": 0, "marks": 0, "seconds": 0.0}

    def write(self, records: list[dict]) -> None:
        cols = telemetry_columns(records, self._retention_map(), DEFAULT_RETENTION_DAYS)
        if cols[0]:
            self._unrolled = True
            try:
                self.ch.insert_columns("telemetry", cols, COLUMNS)
            finally:
                if self.on_written is not None:
                    self.on_written({(r["tenant_id"], r["device_id"]) for r in records})

    def write_raw(self, items: list[tuple[bytes, int, int]]) -> int:
        tel = codec("telemetry")
        good = [it for it in items if tel.matches(it[0])]
        # another writer schema (an older or newer version of the record, adr/0140) or not telemetry at all:
        # decoded here, by schema resolution, or skipped and logged
        other = [it for it in items if not tel.matches(it[0])] if len(good) < len(items) else []
        bad = self._write_decoded_here(other) if other else 0
        if not good:
            return bad
        self._unrolled = True
        try:
            self._insert_decoded_by_clickhouse(good)
        except Exception as exc:
            # a corrupt body fails the whole insert; whatever part of it landed is written again below (raw
            # rows replace themselves, rollups are recomputed from them), and fastavro sorts good from bad
            log.warning("ClickHouse could not insert the batch as Avro (%s); decoding it in Python", exc)
            self.fallbacks += 1
            bad += self._write_decoded_here(good)
        finally:
            if self.on_written is not None:  # the tenant and device off the wire: no decoding (adr/0065)
                self.on_written({(peek_string(v, 0), peek_string(v, 1)) for v, _p, _o in good})
        return bad

    def receive_time(self, value: bytes) -> int | None:
        return avro_batch.receive_time(value)

    def answers(self) -> bool:
        return self.ch.answers()

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
        tel, records, bad = codec("telemetry"), [], 0
        for value, partition, offset in items:
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

    @property
    def rollups_pending(self) -> bool:
        """Written since the last rollup refresh (reads are exact anyway; this is the refresh's backlog)."""
        return self._unrolled

    def on_assigned(self, committed: dict[tuple[str, int], int]) -> None:
        moved = rollups.reset(self.ch, self.ch.database, {p: o for (_t, p), o in committed.items()})
        if moved:
            log.info("rollup progress set back to the committed offsets: %s", moved)
        self._unrolled = True

    # A refresh recomputes every minute its marks touch from raw, so its cost is about the rows of the newest
    # minute or two (~1-1.5 s CPU at 25k points/s, more wall time on a busy box) whatever the interval:
    # under load the interval grows until refreshes take at most this share of the sink's thread
    ROLLUP_SHARE = 0.1
    ROLLUP_MAX_EVERY_S = 120.0

    def rollup_interval(self) -> float:
        """Seconds between refreshes under load: ``rollup_every_s``, longer while refreshes are slow."""
        slow = self._last_refresh_s / self.ROLLUP_SHARE
        return min(max(self.rollup_every_s, slow), max(self.rollup_every_s, self.ROLLUP_MAX_EVERY_S))

    def maintain(self, partitions: list[tuple[str, int]], *, idle: bool) -> None:
        now = time.monotonic()
        due = now - self._rolled_at >= self.rollup_interval()
        # idle: at once, unless the last refresh failed (then every rollup_every_s, not every idle second)
        if not self._unrolled or not (due or (idle and not self._refresh_failed)):
            return
        self._rolled_at = now
        self._refresh_failed = True  # until it returns
        done = rollups.refresh(self.ch, self.ch.database, sorted({p for _t, p in partitions}))
        self._refresh_failed = self._unrolled = False
        self._last_refresh_s = time.monotonic() - now
        self.rollup_stats["refreshes"] += 1
        self.rollup_stats["marks"] += done.marks
        self.rollup_stats["seconds"] += self._last_refresh_s

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
        "rejections": (REJECTION_COLUMNS, rejection_row),
    }

    def __init__(self, ch: ClickHouse, table: str):
        self.ch, self.table = ch, table
        self.columns, self.to_row = self.TABLES[table]

    def write(self, records: list[dict]) -> None:
        if records:
            self.ch.insert(self.table, [self.to_row(r) for r in records], self.columns)

    def answers(self) -> bool:
        return self.ch.answers()


class ClickHouseRejectionSink(ClickHouseRecordSink):
    """Dead letters into ``rejections`` (adr/0180), counted per tenant, source and reason on the way: the one
    place that sees every refusal, the connectors' and the stream agents' alike."""

    def __init__(self, ch: ClickHouse):
        super().__init__(ch, "rejections")

    def write(self, records: list[dict]) -> None:
        super().write(records)
        for r in records:
            obs.record_rejection(r.get("tenant_id"), r["source"], r["reason_code"])
