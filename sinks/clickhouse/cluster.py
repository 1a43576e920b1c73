"""The ClickHouse schema for a cluster (adr/0138): the single-node tables of ``schema.py`` become
``Replicated*MergeTree`` tables named ``<name>_local`` on every shard, with a ``Distributed`` table under the
original name in front of them, all created ``ON CLUSTER``. Readers and the sink keep using the original
names, so nothing above this module knows whether it talks to one node or a cluster.

Rows are sharded so that everything deduplication and rollups need together lands on one shard:
``telemetry``, its rollups and latest values, events, alerts and command history by (tenant, device), so a
``FINAL`` read per shard is a global ``FINAL``; the rollup bookkeeping by Kafka partition (the unit its
recompute walks). Materialised views are created on every shard between local tables, so an insert through
the Distributed table fires them where the rows land.
"""

from __future__ import annotations

import re

from . import schema

# table → sharding expression of its Distributed table
SHARD_BY = {
    "telemetry": "cityHash64(tenant_id, device_id)",
    "telemetry_1m": "cityHash64(tenant_id, device_id)",
    "telemetry_1h": "cityHash64(tenant_id, device_id)",
    "telemetry_latest": "cityHash64(tenant_id, device_id)",
    "device_events": "cityHash64(tenant_id, device_id)",
    "alerts": "cityHash64(tenant_id, device_id)",
    "command_history": "cityHash64(tenant_id, device_id)",
    "rejections": "cityHash64(tenant_id, device_id)",
    # written only by the view on telemetry_local, so where the telemetry rows are
    "rollup_marks": "cityHash64(tenant_id, device_id)",
    "rollup_progress": "kafka_partition",
    "tenant_retention": "cityHash64(tenant_id)",
}

# An insert through a Distributed table is acknowledged only once every shard holds its rows; the default
# (queue on the initiator's disk, send later) would acknowledge readings a lost node still owes.
INSERT_SETTINGS = {"insert_distributed_sync": 1}

_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) \(")
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)(?:\(([^)]*)\))?")
_VIEW = re.compile(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO (\w+)\.(\w+) AS")


def _local_table(stmt: str, db: str, cluster: str) -> tuple[str, str]:
    """One single-node CREATE TABLE → (its replicated local table, the table's name)."""
    m = _CREATE_TABLE.search(stmt)
    name = m.group(2)
    local = f"{name}_local"
    out = stmt.replace(m.group(0), f"CREATE TABLE IF NOT EXISTS {db}.{local} ON CLUSTER {cluster} (", 1)
    e = _ENGINE.search(out)
    args = [f"'/clickhouse/tables/{{shard}}/{db}/{local}'", "'{replica}'"]
    if e.group(2):
        args.append(e.group(2))
    return out.replace(e.group(0), f"ENGINE = Replicated{e.group(1)}({', '.join(args)})", 1), name


def _distributed(db: str, cluster: str, name: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} AS {db}.{name}_local\n"
            f"ENGINE = Distributed({cluster}, {db}, {name}_local, {SHARD_BY[name]})")


def _local_view(stmt: str, db: str, cluster: str) -> str:
    m = _VIEW.search(stmt)
    out = stmt.replace(m.group(0), f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{m.group(2)} ON CLUSTER {cluster} "
                                   f"TO {db}.{m.group(4)}_local AS", 1)
    return re.sub(rf"FROM {re.escape(db)}\.(\w+)", rf"FROM {db}.\1_local", out)


def statements(db: str, cluster: str) -> list[str]:
    """Every statement, in order: each local table and its Distributed table, then the views."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise ValueError(f"cluster name {cluster!r}: letters, digits and '_' only")
    tables, views = [], []
    for stmt in schema.statements(db):
        if _VIEW.search(stmt):
            views.append(_local_view(stmt, db, cluster))
            continue
        local, name = _local_table(stmt, db, cluster)
        tables += [local, _distributed(db, cluster, name)]
    return [f"CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {cluster}", *tables, *views]


def create_all(client, database: str, cluster: str) -> None:
    """Idempotent, like the single-node ``schema.create_all``; a cluster starts on the current schema, so
    the single-node migrations (spine columns, insert-time rollups) have nothing to do here."""
    for stmt in statements(database, cluster):
        client.command(stmt)
