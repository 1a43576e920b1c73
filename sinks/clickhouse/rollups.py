"""Rollups recomputed from deduplicated raw rows (adr/0114).

Every raw insert also writes, through the ``rollup_marks`` view, which (tenant, device, metric, minute) each
Kafka offset touched. A *refresh* takes the marks of a partition from its ``done_below`` offset up to the
newest one, recomputes those minutes from ``telemetry FINAL`` (so a re-sent reading is one point) and their
hours from the minutes, inserts the rows (a newer ``computed_at`` replaces the bucket's older row), and
only then moves ``done_below`` past them. A crash anywhere in between leaves ``done_below`` where it was and
the next refresh does the same work again: every step is idempotent.

Why this is exact after a crash: the sink commits Kafka offsets only after the whole insert (raw part and
the views' parts) returned, and refreshes only after committing, so ``done_below`` never passes the
committed offset; an insert cut short by a crash is re-written from the committed offset on restart (its
raw rows replace themselves, its marks are written again), and ``reset`` pulls ``done_below`` back to the
committed offset in case it ran ahead (a group reset, a recreated topic).

Reads stay exact between refreshes: a bucket holding a raw row at or beyond its partition's ``done_below``
is read from raw (``store.TelemetryStore.downsampled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Refreshed:
    partitions: int = 0  # partitions whose done_below moved
    marks: int = 0  # offsets' (key, minute) marks consumed


def progress(ch, database: str) -> dict[int, int]:
    """Kafka partition → the offset below which every raw row is in the rollups."""
    return {int(p): int(d) for p, d in ch.query_rows(
        f"SELECT kafka_partition, argMax(done_below, updated_at) FROM {database}.rollup_progress "
        "GROUP BY kafka_partition")}


def _set_progress(ch, database: str, done: dict[int, int]) -> None:
    if done:
        values = ", ".join(f"({int(p)}, {int(o)}, now64(6))" for p, o in sorted(done.items()))
        ch.command(f"INSERT INTO {database}.rollup_progress (kafka_partition, done_below, updated_at) VALUES {values}")


def reset(ch, database: str, committed: dict[int, int]) -> dict[int, int]:
    """On assignment: every assigned partition gets a progress row, and none stays beyond the group's
    committed offset (what lies beyond it will be written again, and its marks with it). Returns what moved."""
    have = progress(ch, database)
    moved = {p: c for p, c in committed.items() if p not in have or have[p] > c}
    _set_progress(ch, database, moved)
    return moved


def _ranges(pending: dict[int, tuple[int, int]]) -> str:
    """SQL condition on rollup_marks for [lo, hi] per partition (ints only: formatted, not bound)."""
    return " OR ".join(f"(kafka_partition = {int(p)} AND kafka_offset BETWEEN {int(lo)} AND {int(hi)})"
                       for p, (lo, hi) in sorted(pending.items()))


# The minutes touched, recomputed from the deduplicated raw rows. A minute past its retention is left alone
# (its raw rows may be partly expired already; its rollup row expires by its own TTL).
_MINUTES = """
INSERT INTO {db}.telemetry_1m (tenant_id, device_id, metric, bucket, sum_v, count_v, min_v, max_v, last_v,
                               last_ts, retention_days, computed_at)
SELECT tenant_id, device_id, metric, toStartOfMinute(ts) AS b,
       ifNull(sum(value_num), 0), count(value_num), ifNull(min(value_num), 0), ifNull(max(value_num), 0),
       ifNull(argMax(value_num, ts), 0), maxIf(ts, value_num IS NOT NULL), max(retention_days), now64(6)
FROM {db}.telemetry FINAL
WHERE {where}
GROUP BY tenant_id, device_id, metric, b
HAVING b + toIntervalDay(max(retention_days)) > now()
"""

# Their hours, from the minute rows just written (at most 60 rows an hour instead of every raw point).
_HOURS = """
INSERT INTO {db}.telemetry_1h (tenant_id, device_id, metric, bucket, sum_v, count_v, min_v, max_v, last_v,
                               last_ts, retention_days, computed_at)
SELECT tenant_id, device_id, metric, toStartOfHour(bucket) AS h,
       sum(sum_v), sum(count_v), minIf(min_v, count_v > 0), maxIf(max_v, count_v > 0),
       argMaxIf(last_v, last_ts, count_v > 0), maxIf(last_ts, count_v > 0), max(retention_days), now64(6)
FROM {db}.telemetry_1m FINAL
WHERE {where}
GROUP BY tenant_id, device_id, metric, h
HAVING h + toIntervalDay(max(retention_days)) > now()
"""


def refresh(ch, database: str, partitions: list[int]) -> Refreshed:
    """Brings the rollups of these Kafka partitions up to the newest marks. Call it only from the writer of
    those partitions, after its last insert returned and was committed."""
    if not partitions:
        return Refreshed()
    done = progress(ch, database)
    since = {p: done.get(p, 0) for p in partitions}
    lows = " OR ".join(f"(kafka_partition = {int(p)} AND kafka_offset >= {int(o)})" for p, o in sorted(since.items()))
    rows = ch.query_rows(f"SELECT kafka_partition, max(kafka_offset), count() FROM {database}.rollup_marks "
                         f"WHERE {lows} GROUP BY kafka_partition")
    pending = {int(p): (since[int(p)], int(hi)) for p, hi, _n in rows}
    if not pending:
        return Refreshed()
    marks = f"{database}.rollup_marks WHERE {_ranges(pending)}"
    ch.command(_MINUTES.format(db=database, where="(tenant_id, device_id, metric, toStartOfMinute(ts)) IN "
                                                  f"(SELECT tenant_id, device_id, metric, minute FROM {marks})"))
    ch.command(_HOURS.format(db=database, where="(tenant_id, device_id, metric, toStartOfHour(bucket)) IN "
                                                f"(SELECT tenant_id, device_id, metric, toStartOfHour(minute) FROM {marks})"))
    _set_progress(ch, database, {p: hi + 1 for p, (_lo, hi) in pending.items()})
    return Refreshed(partitions=len(pending), marks=sum(int(n) for _p, _hi, n in rows))


def rebuild(ch, database: str) -> None:
    """Every rollup row from raw, once (a data directory from before adr/0114); then every partition in raw
    counts as rolled up to its highest offset."""
    log.warning("rebuilding the minute and hour rollups from raw telemetry (once, after an upgrade)")
    ch.command(_MINUTES.format(db=database, where="1"))
    ch.command(_HOURS.format(db=database, where="1"))
    top = ch.query_rows(f"SELECT kafka_partition, max(kafka_offset) + 1 FROM {database}.telemetry GROUP BY kafka_partition")
    _set_progress(ch, database, {int(p): int(o) for p, o in top})
