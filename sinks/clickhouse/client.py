"""One ClickHouse client per process, embedded (chdb) or server, through clickhouse-connect (adr/0007).

A clickhouse-connect client is not safe for concurrent use, so writes and commands go through one client
under one lock. Queries take one of ``readers`` clients of their own: with chdb each client is its own
connection to the process's one engine, and queries on different connections run in parallel (chdb
releases the GIL while ClickHouse works), so concurrent API reads no longer queue behind each other or
behind the sink's inserts (adr/0185).
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from pathlib import Path

import clickhouse_connect

from .cluster import INSERT_SETTINGS

DEFAULT_READERS = 4


class ClickHouse:
    """:param readers: clients for ``query_rows`` (0: queries share the writer's client and lock).
    :param cluster: a ClickHouse cluster's name: the schema is created ``ON CLUSTER`` with replicated local
        tables behind Distributed ones (``cluster.py``, adr/0138); None = one node."""

    def __init__(self, dsn: str, database: str = "fleetstream", cluster: str | None = None, *,
                 readers: int = DEFAULT_READERS):
        self.dsn, self.database, self.cluster = dsn, database, cluster
        if cluster and dsn.startswith("chdb:"):
            raise ValueError("an embedded ClickHouse (chdb) is one node: unset the ClickHouse cluster")
        # inserts through Distributed tables are acknowledged once every shard has them (cluster.py)
        self._insert_settings = dict(INSERT_SETTINGS) if cluster else None
        if dsn.startswith("chdb:"):
            Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        self._client = clickhouse_connect.get_client(dsn=dsn)
        self._lock = threading.Lock()
        self._readers: queue.SimpleQueue = queue.SimpleQueue()
        self._all_readers = [clickhouse_connect.get_client(dsn=dsn) for _ in range(readers)]
        for r in self._all_readers:
            self._readers.put(r)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    @contextmanager
    def _reader(self):
        if not self._all_readers:
            with self._lock:
                yield self._client
            return
        client = self._readers.get()  # blocks while every reader is busy: at most `readers` queries at once
        try:
            yield client
        finally:
            self._readers.put(client)

    def command(self, sql: str, parameters: dict | None = None):
        with self._lock:
            return self._client.command(sql, parameters=parameters)

    def answers(self) -> bool:
        """Whether the store runs a query now (tells a refused insert apart from an outage)."""
        return self.query_rows("SELECT 1") == [(1,)]

    def query_rows(self, sql: str, parameters: dict | None = None, settings: dict | None = None) -> list[tuple]:
        with self._reader() as client:
            return client.query(sql, parameters=parameters, settings=settings).result_rows

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
        for _ in self._all_readers:  # waits (a while) for queries in flight to hand their client back
            try:
                self._readers.get(timeout=30).close()
            except queue.Empty:
                break
        self._all_readers = []
        with self._lock:
            self._client.close()
