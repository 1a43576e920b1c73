"""ClickHouse tables (adr/0007, adr/0060, adr/0114): tenant-first ordering, monthly partitions, per-row TTL.

``telemetry`` is a ReplacingMergeTree keyed by (tenant, device, metric, event time); reads use FINAL, so a
re-sent reading or a batch re-written after a crash is one point. Every raw row also carries the Kafka
partition and offset it came from.

Rollups (``telemetry_1m``, ``telemetry_1h``) are *recomputed* from the deduplicated raw rows, never fed by
insert-time views (which see every insert block, duplicates and re-writes included, and may miss a block
whose raw part landed just before a crash; adr/0114): a view records which (key, minute) each Kafka offset
touched (``rollup_marks``), and the telemetry sink periodically recomputes those minutes from
``telemetry FINAL`` and their hours from the minutes (``sinks.clickhouse.rollups``), replacing rows keyed
by bucket. ``rollup_progress`` says, per Kafka partition, below which offset everything is rolled up; reads
take buckets holding rows at or beyond it from raw (``sinks.clickhouse.store``). ``telemetry_latest``
keeps the last value of each metric (argMax is idempotent, so a re-written batch cannot skew it). Device
events, alerts and command history have tables of their own (adr/0061), refused input too (adr/0180).
"""

from __future__ import annotations

_KEY = """tenant_id LowCardinality(String), device_id String, metric LowCardinality(String)"""

TELEMETRY = """
CREATE TABLE IF NOT EXISTS {db}.telemetry (
    tenant_id   LowCardinality(String),
    device_id   String,
    metric      LowCardinality(String),
    ts          DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    received_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    value_num   Nullable(Float64) CODEC(Gorilla, ZSTD),
    value_bool  Nullable(UInt8),
    value_str   Nullable(String),
    protocol    LowCardinality(String),
    retention_days UInt16 DEFAULT 365,
    kafka_partition UInt16 DEFAULT 0,
    kafka_offset    UInt64 DEFAULT 0 CODEC(Delta, ZSTD),
    INDEX kafka_offset_idx kafka_offset TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, device_id, metric, ts)
TTL toDateTime(ts) + toIntervalDay(retention_days)
"""

# One rollup shape for both grains: plain aggregates of one bucket, replaced as a whole by each recompute
# (the newest ``computed_at`` wins; reads use FINAL). avg = sum_v / count_v; ``last_v`` is the value at
# ``last_ts``, the latest event time of the bucket. A bucket whose numeric rows were all replaced (e.g. by a
# string at the same timestamp) is recomputed to count_v = 0, which reads skip. Granules of 1,024 rows (not
# 8,192): reads of a pending hour's minutes and refreshes of one bucket touch a small slice per series.
_ROLLUP = """
CREATE TABLE IF NOT EXISTS {db}.telemetry_{grain} (
    """ + _KEY + """,
    bucket   DateTime('UTC'),
    sum_v    Float64,
    count_v  UInt64,
    min_v    Float64,
    max_v    Float64,
    last_v   Float64,
    last_ts  DateTime64(3, 'UTC'),
    retention_days UInt16,
    computed_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, device_id, metric, bucket)
TTL bucket + toIntervalDay(retention_days * {ttl_factor})
SETTINGS index_granularity = 1024
"""

# Which (key, minute) each Kafka offset touched, every value type (a string replacing a number at the same
# timestamp changes the numeric aggregates too). Read by offset range, so ordered by the Kafka coordinates;
# kept a day longer than the telemetry topic keeps records (7 days), whole parts at a time.
MARKS = """
CREATE TABLE IF NOT EXISTS {db}.rollup_marks (
    kafka_partition UInt16,
    kafka_offset    UInt64,
    """ + _KEY + """,
    minute    DateTime('UTC'),
    marked_at DateTime('UTC') DEFAULT now()
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(marked_at)
ORDER BY (kafka_partition, kafka_offset)
TTL marked_at + INTERVAL 8 DAY
SETTINGS ttl_only_drop_parts = 1
"""

MARKS_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_marks_mv TO {db}.rollup_marks AS
SELECT kafka_partition, max(kafka_offset) AS kafka_offset, tenant_id, device_id, metric,
       toStartOfMinute(ts) AS minute
FROM {db}.telemetry GROUP BY kafka_partition, tenant_id, device_id, metric, minute
"""

# Per Kafka partition of the telemetry topic: every raw row with a lower offset is in the rollups. The
# newest row per partition counts (it may move back when a sink finds the group's commit behind it).
PROGRESS = """
CREATE TABLE IF NOT EXISTS {db}.rollup_progress (
    kafka_partition UInt16,
    done_below UInt64,
    updated_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY kafka_partition
"""

# Last value of every metric of every device, whatever its type: a tuple (num, bool, str) by event time.
LATEST = """
CREATE TABLE IF NOT EXISTS {db}.telemetry_latest (
    """ + _KEY + """,
    last_v AggregateFunction(argMax, Tuple(Nullable(Float64), Nullable(UInt8), Nullable(String)), DateTime64(3, 'UTC')),
    last_ts SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree
ORDER BY (tenant_id, device_id, metric)
"""

LATEST_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.telemetry_latest_mv TO {db}.telemetry_latest AS
SELECT tenant_id, device_id, metric, argMaxState((value_num, value_bool, value_str), ts) AS last_v, max(ts) AS last_ts
FROM {db}.telemetry GROUP BY tenant_id, device_id, metric
"""

# Device events, alerts and command history: ReplacingMergeTree on the Kafka coordinates, so a record
# re-delivered after a crash is one row under FINAL (these tables feed no rollups).
DEVICE_EVENTS = """
CREATE TABLE IF NOT EXISTS {db}.device_events (
    tenant_id LowCardinality(String), device_id String, time DateTime64(3, 'UTC'),
    event_type LowCardinality(String), source LowCardinality(String), reason Nullable(String),
    details Map(String, String), kafka_partition UInt16, kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (tenant_id, device_id, time, kafka_partition, kafka_offset)
TTL toDateTime(time) + toIntervalDay(400)
"""

ALERTS = """
CREATE TABLE IF NOT EXISTS {db}.alerts (
    tenant_id LowCardinality(String), device_id String, alert_id String, rule_id String,
    severity LowCardinality(String), state LowCardinality(String), time DateTime64(3, 'UTC'),
    message String, details_json String, kafka_partition UInt16, kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (tenant_id, device_id, time, kafka_partition, kafka_offset)
TTL toDateTime(time) + toIntervalDay(400)
"""

COMMAND_HISTORY = """
CREATE TABLE IF NOT EXISTS {db}.command_history (
    tenant_id LowCardinality(String), device_id String, command_id String, kind LowCardinality(String),
    name String, status LowCardinality(String), time DateTime64(3, 'UTC'), params_json String,
    result_json Nullable(String), reason Nullable(String), kafka_topic LowCardinality(String),
    kafka_partition UInt16, kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (tenant_id, device_id, time, kafka_topic, kafka_partition, kafka_offset)
TTL toDateTime(time) + toIntervalDay(400)
"""

# Refused input (the dead-letter topic, adr/0180), so tenants see why: reason, time and a bounded sample of the
# payload (``raw_sample``: at most REJECTION_SAMPLE_BYTES of it; ``raw_size`` the whole size). Kept as long as
# the topic keeps dead letters. Dead letters without a tenant (an undecodable record) are stored under
# tenant '' where no tenant reads them.
REJECTIONS = """
CREATE TABLE IF NOT EXISTS {db}.rejections (
    tenant_id LowCardinality(String), device_id String, time DateTime64(3, 'UTC'),
    source LowCardinality(String), reason_code LowCardinality(String), reason String, origin Nullable(String),
    raw_sample String, raw_size UInt32, kafka_partition UInt16, kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (tenant_id, device_id, time, kafka_partition, kafka_offset)
TTL toDateTime(time) + toIntervalDay(14)
"""

# Per-tenant retention: written by the gateway, read by the sink (which stamps retention_days on rows).
TENANT_RETENTION = """
CREATE TABLE IF NOT EXISTS {db}.tenant_retention (
    tenant_id String, retention_days UInt16, updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY tenant_id
"""

# (grain, TTL factor): hourly rollups outlive raw data 4x so long ranges stay readable.
GRAINS = (("1m", 1), ("1h", 4))

# Tables and views of the insert-time rollups this schema replaces (adr/0060 → adr/0114).
_OLD_VIEWS = ("telemetry_1m_mv", "telemetry_1h_mv")


def statements(db: str = "fleetstream") -> list[str]:
    out = [TELEMETRY.format(db=db)]
    for grain, factor in GRAINS:
        out.append(_ROLLUP.format(db=db, grain=grain, ttl_factor=factor))
    out += [s.format(db=db) for s in (MARKS, MARKS_MV, PROGRESS, LATEST, LATEST_MV, DEVICE_EVENTS, ALERTS,
                                      COMMAND_HISTORY, TENANT_RETENTION, REJECTIONS)]
    return out


def create_all(client, database: str = "fleetstream") -> None:
    if getattr(client, "cluster", None):
        from . import cluster  # builds on the single-node statements above

        cluster.create_all(client, database, client.cluster)
        return
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    stmts = statements(database)
    client.command(stmts[0])
    # A telemetry table made by the spine's schema lacks the Kafka coordinates; add them (idempotent).
    for col in ("kafka_partition UInt16 DEFAULT 0", "kafka_offset UInt64 DEFAULT 0"):
        client.command(f"ALTER TABLE {database}.telemetry ADD COLUMN IF NOT EXISTS {col}")
    migrate = _retire_insert_time_rollups(client, database)
    for stmt in stmts[1:]:
        client.command(stmt)
    if migrate:
        from .rollups import rebuild  # the rollups module builds on these tables

        rebuild(client, database)


def _retire_insert_time_rollups(client, database: str) -> bool:
    """A data directory from before adr/0114 has AggregatingMergeTree rollups fed by views: stop the views,
    keep the old tables under another name (hours older than the raw data live only there) and have the
    new rollups rebuilt from raw. Returns whether a rebuild is needed."""
    rows = client.query_rows(
        "SELECT name FROM system.tables WHERE database = {db:String} AND name IN ('telemetry_1m', 'telemetry_1h') "
        "AND engine = 'AggregatingMergeTree'", {"db": database})
    for view in _OLD_VIEWS:
        client.command(f"DROP VIEW IF EXISTS {database}.{view}")
    for (name,) in rows:
        client.command(f"RENAME TABLE {database}.{name} TO {database}.{name}_insert_time")
    return bool(rows)
