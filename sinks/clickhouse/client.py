"""One ClickHouse client per process, embedded (chdb) or server, through clickhouse-connect (adr/0007).

chdb allows one process per data path, and its client is not safe for concurrent use, so every call in
a process goes through the same client under one lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import clickhouse_connect

from .cluster import INSERT_SETTINGS


class ClickHouse:
    def __init__(self, dsn: str, database: str = "fleetstream", cluster: str | None = None):
        """:param cluster: a ClickHouse cluster's name: the schema is created ``ON CLUSTER`` with replicated
            local tables behind Distributed ones (``cluster.py``, adr/0138); None = one node."""
        self.dsn, self.database, self.cluster = dsn, database, cluster
        if cluster and dsn.startswith("chdb:"):
            raise ValueError("an embedded ClickHouse (chdb) is one node: unset the ClickHouse cluster")
        # inserts through Distributed tables are acknowledged once every shard has them (cluster.py)
        self._insert_settings = dict(INSERT_SETTINGS) if cluster else None
        if dsn.startswith("chdb:"):
            Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        self._client = clickhouse_connect.get_client(dsn=dsn)
        self._lock = threading.Lock()

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    def command(self, sql: str, parameters: dict | None = None):
        with self._lock:
            return self._client.command(sql, parameters=parameters)

    def query_rows(self, sql: str, parameters: dict | None = None, settings: dict | None = None) -> list[tuple]:
        with self._lock:
            return self._client.query(sql, parameters=parameters, settings=settings).result_rows

    def insert(self, table: str, rows: list[list], columns: list[str]) -> None:
        with self._lock:
            self._client.insert(table, rows, column_names=columns, database=self.database,
                                settings=self._insert_settings)

    def insert_columns(self, table: str, data: list[list], columns: list[str]) -> None:
        """``data`` holds one list per column (no row-to-column transposition in clickhouse-connect)."""
        with self._lock:
            self._client.insert(table, data, column_names=columns, database=self.database, column_oriented=True,
                                settings=self._insert_settings)

    def close(self) -> None:
        with self._lock:
            self._client.close()
