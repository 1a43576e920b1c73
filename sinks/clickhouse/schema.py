"""ClickHouse tables (adr/0007, adr/0060): tenant-first ordering, monthly partitions, per-row TTL.

``telemetry`` is a ReplacingMergeTree keyed by (tenant, device, metric, event time); reads use FINAL.
Every raw row also carries the Kafka partition and offset it came from, which lets a restarted sink skip
records that already reached ClickHouse (``sinks.clickhouse.watermark``) so the rollup views, which see
every insert, never count a re-delivered record twice (adr/0060).

Rollups (``telemetry_1m``, ``telemetry_1h``) are AggregatingMergeTree tables fed by materialised views
over numeric values; ``telemetry_latest`` keeps the last value of each metric. Device events, alerts and
command history have tables of their own (adr/0061).
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

# One rollup shape for both grains. min/max are SimpleAggregateFunction (cheap); avg is sum/count so the
# hour can be computed from merged states exactly; ``last`` is argMax over event time.
_ROLLUP = """
CREATE TABLE IF NOT EXISTS {db}.telemetry_{grain} (
    """ + _KEY + """,
    bucket   DateTime('UTC'),
    sum_v    AggregateFunction(sum, Float64),
    count_v  AggregateFunction(count, Float64),
    min_v    SimpleAggregateFunction(min, Float64),
    max_v    SimpleAggregateFunction(max, Float64),
    last_v   AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')),
    retention_days SimpleAggregateFunction(max, UInt16)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, device_id, metric, bucket)
TTL bucket + toIntervalDay(retention_days * {ttl_factor})
"""

_ROLLUP_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.telemetry_{grain}_mv TO {db}.telemetry_{grain} AS
SELECT tenant_id, device_id, metric, {bucket_fn}(ts) AS bucket,
       sumState(v) AS sum_v, countState(v) AS count_v, min(v) AS min_v, max(v) AS max_v,
       argMaxState(v, ts) AS last_v, max(retention_days) AS retention_days
FROM (SELECT *, assumeNotNull(value_num) AS v FROM {db}.telemetry WHERE value_num IS NOT NULL)
GROUP BY tenant_id, device_id, metric, bucket
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

# Per-tenant retention: written by the gateway, read by the sink (which stamps retention_days on rows).
TENANT_RETENTION = """
CREATE TABLE IF NOT EXISTS {db}.tenant_retention (
    tenant_id String, retention_days UInt16, updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY tenant_id
"""

# (grain, bucket function, TTL factor): hourly rollups outlive raw data 4x so long ranges stay readable.
GRAINS = (("1m", "toStartOfMinute", 1), ("1h", "toStartOfHour", 4))


def statements(db: str = "fleetstream") -> list[str]:
    out = [TELEMETRY.format(db=db)]
    for grain, fn, factor in GRAINS:
        out.append(_ROLLUP.format(db=db, grain=grain, ttl_factor=factor))
        out.append(_ROLLUP_MV.format(db=db, grain=grain, bucket_fn=fn))
    out += [s.format(db=db) for s in (LATEST, LATEST_MV, DEVICE_EVENTS, ALERTS, COMMAND_HISTORY, TENANT_RETENTION)]
    return out


def create_all(client, database: str = "fleetstream") -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    stmts = statements(database)
    client.command(stmts[0])
    # A telemetry table made by the spine's schema lacks the Kafka coordinates; add them (idempotent).
    for col in ("kafka_partition UInt16 DEFAULT 0", "kafka_offset UInt64 DEFAULT 0"):
        client.command(f"ALTER TABLE {database}.telemetry ADD COLUMN IF NOT EXISTS {col}")
    for stmt in stmts[1:]:
        client.command(stmt)
