"""Devices of one tenant. Every function runs inside a tenant transaction (``Database.tenant_tx``) and
also names the tenant explicitly, so a query is right even before RLS is consulted."""

from __future__ import annotations

import psycopg


def create_device(conn: psycopg.Connection, *, tenant_id: str, device_id: str, device_type: str | None = None,
                  tags: list[str] | None = None) -> dict:
    return conn.execute(
        "insert into devices (tenant_id, device_id, device_type, tags) values (%s, %s, %s, %s) returning *",
        (tenant_id, device_id, device_type, tags or [])).fetchone()


def get_device(conn: psycopg.Connection, *, tenant_id: str, device_id: str) -> dict | None:
    return conn.execute("select * from devices where tenant_id = %s and device_id = %s",
                        (tenant_id, device_id)).fetchone()
