"""The ClickHouse cluster schema (adr/0138). No ClickHouse server, Keeper or second node runs here, so this
checks what can be checked on chdb: every statement parses with ClickHouse's own parser, the structure keeps
deduplication and rollups shard-local, and the local tables with their views — the part that runs on every
shard — work when executed (replication and Distributed left out)."""

from __future__ import annotations

import re

import chdb
import pytest

from sinks.clickhouse import cluster, schema
from sinks.clickhouse.client import ClickHouse

DB, CLUSTER = "fleetstream", "fs_cluster"


def test_every_statement_parses_with_clickhouses_parser():
    for stmt in cluster.statements(DB, CLUSTER):
        chdb.query("EXPLAIN AST " + stmt, "CSV")  # raises on a syntax error


def test_every_table_is_replicated_behind_a_distributed_table_on_the_cluster():
    stmts = cluster.statements(DB, CLUSTER)
    assert all(f"ON CLUSTER {CLUSTER}" in s for s in stmts)
    single = [re.search(r"EXISTS \w+\.(\w+) \(", s).group(1) for s in schema.statements(DB) if "CREATE TABLE" in s]
    assert set(single) == set(cluster.SHARD_BY)
    for name in single:
        local = next(s for s in stmts if f"{DB}.{name}_local ON CLUSTER" in s)
        assert re.search(rf"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/{{shard}}/{DB}/{name}_local', "
                         r"'{replica}'", local), local
        dist = next(s for s in stmts if f"{DB}.{name} ON CLUSTER" in s)
        assert f"Distributed({CLUSTER}, {DB}, {name}_local, {cluster.SHARD_BY[name]})" in dist


def test_deduplicated_tables_keep_each_series_on_one_shard():
    """FINAL and argMax deduplicate per shard: a series split over shards would be counted twice."""
    for name in ("telemetry", "telemetry_1m", "telemetry_1h", "telemetry_latest", "device_events", "alerts",
                 "command_history", "rollup_marks", "rejections"):
        assert cluster.SHARD_BY[name] == "cityHash64(tenant_id, device_id)"


def test_views_run_between_local_tables():
    views = [s for s in cluster.statements(DB, CLUSTER) if "MATERIALIZED VIEW" in s]
    assert len(views) == 2
    for v in views:
        assert re.search(rf"TO {DB}\.\w+_local AS", v) and re.search(rf"FROM {DB}\.telemetry_local\b", v), v


def _one_shard(stmt: str) -> str | None:
    """The statement as one shard runs it without Keeper: no cluster, no replication, no Distributed."""
    if "ENGINE = Distributed" in stmt:
        return None
    stmt = stmt.replace(f" ON CLUSTER {CLUSTER}", "")
    return re.sub(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?", r"\1(", stmt)


def test_local_tables_and_views_work_on_a_shard(tmp_path):
    ch = ClickHouse(f"chdb://{tmp_path}")
    try:
        for stmt in cluster.statements(DB, CLUSTER):
            if (one := _one_shard(stmt)) is not None:
                ch.command(one)
        ch.command(f"INSERT INTO {DB}.telemetry_local (tenant_id, device_id, metric, ts, received_at, value_num, "
                   "protocol, kafka_partition, kafka_offset) VALUES ('t1', 'd1', 'temp', '2026-12-02 10:00:01', "
                   "'2026-12-02 10:00:02', 21.5, 'mqtt', 3, 42)")
        latest = ch.query_rows(f"SELECT metric, argMaxMerge(last_v).1 FROM {DB}.telemetry_latest_local "
                               "GROUP BY tenant_id, device_id, metric")
        marks = ch.query_rows(f"SELECT kafka_partition, kafka_offset, minute FROM {DB}.rollup_marks_local")
    finally:
        ch.close()
    assert latest == [("temp", 21.5)]
    assert [(p, o) for p, o, _ in marks] == [(3, 42)]


def test_a_cluster_needs_a_server_and_a_plain_name(tmp_path):
    with pytest.raises(ValueError, match="one node"):
        ClickHouse(f"chdb://{tmp_path}", cluster=CLUSTER)
    with pytest.raises(ValueError, match="letters"):
        cluster.statements(DB, "fs; DROP TABLE x")
