"""ClickHouse tables (adr/0007): tenant-first ordering, monthly partitions, per-row TTL.

``telemetry`` is a ReplacingMergeTree keyed by (tenant, device, metric, event time): a batch written
again after a crash replaces itself instead of duplicating, and reads use FINAL.
"""

from __future__ import annotations

TELEMETRY = """
CREATE TABLE IF NOT EXISTS {db}.telemetry (
    tenant_id   LowCardinality(String),
    device_id   String,
    metric      LowCardinality(String),
    ts          DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    value_num   Nullable(Float64),
    value_bool  Nullable(UInt8),
    value_str   Nullable(String),
    protocol    LowCardinality(String),
    retention_days UInt16 DEFAULT 365
) ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, device_id, metric, ts)
TTL toDateTime(ts) + toIntervalDay(retention_days)
"""

STATEMENTS = [TELEMETRY]


def create_all(client, database: str = "fleetstream") -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    for stmt in STATEMENTS:
        client.command(stmt.format(db=database))
