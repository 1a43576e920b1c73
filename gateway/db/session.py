"""Postgres access for the gateway: a pool of application-role connections, and tenant transactions.

``tenant_tx`` is the only way route code reaches tenant data: it sets ``app.tenant_id`` for exactly one
transaction (``set_config(..., true)``), so a pooled connection never carries a tenant into the next use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


class Database:
    def __init__(self, app_dsn: str, *, min_size: int = 1, max_size: int = 10):
        # check: a connection is tried before it is handed out, so after a Postgres restart no request gets a
        # dead one (one round trip per checkout; adr/0111)
        self.pool = ConnectionPool(app_dsn, min_size=min_size, max_size=max_size, open=False,
                                   kwargs={"row_factory": dict_row}, check=ConnectionPool.check_connection)

    def open(self) -> None:
        self.pool.open(wait=True, timeout=15)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def tenant_tx(self, tenant_id: str) -> Iterator[psycopg.Connection]:
        if not tenant_id:
            raise ValueError("a tenant transaction needs a tenant")
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            yield conn

    @contextmanager
    def anonymous_tx(self) -> Iterator[psycopg.Connection]:
        """No tenant: RLS hides every tenant row; only definer functions such as authenticate_client help."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn
