"""The append-only audit log: who changed what, per tenant."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb


def record(conn: psycopg.Connection, *, tenant_id: str, actor: str, action: str, target: str,
           details: dict | None = None) -> None:
    conn.execute("insert into audit_log (tenant_id, actor, action, target, details) values (%s, %s, %s, %s, %s)",
                 (tenant_id, actor, action, target, Jsonb(details or {})))


def list_entries(conn: psycopg.Connection, *, tenant_id: str, limit: int, before_id: int | None = None,
                 target: str | None = None) -> list[dict]:
    where, args = ["tenant_id = %s"], [tenant_id]
    if before_id is not None:
        where.append("id < %s")
        args.append(before_id)
    if target is not None:
        where.append("target = %s")
        args.append(target)
    args.append(limit)
    return conn.execute(f"select * from audit_log where {' and '.join(where)} order by id desc limit %s",
                        args).fetchall()
