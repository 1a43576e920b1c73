"""Devices of one tenant. Every function runs inside a tenant transaction (``Database.tenant_tx``) and
also names the tenant explicitly, so a query is right even before RLS is consulted."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

LIFECYCLE = ("provisioned", "active", "suspended", "decommissioned")


def create_device(conn: psycopg.Connection, *, tenant_id: str, device_id: str, device_type: str | None = None,
                  tags: list[str] | None = None, attributes: dict | None = None) -> dict:
    """Inserts a device in ``provisioned``; raises ``psycopg.errors.UniqueViolation`` if the id is taken."""
    return conn.execute(
        "insert into devices (tenant_id, device_id, device_type, tags, attributes) values (%s, %s, %s, %s, %s) "
        "returning *", (tenant_id, device_id, device_type, tags or [], Jsonb(attributes or {}))).fetchone()


def insert_new_devices(conn: psycopg.Connection, *, tenant_id: str, devices: list[dict]) -> list[dict | None]:
    """Inserts many devices in ``provisioned``, one statement per device in one pipelined batch (not a round trip
    each); returns one entry per input, in order: the new row, or None where the id was taken (earlier in the
    same list included). Any other violation fails the whole batch, as it failed the per-row path."""
    if not devices:
        return []
    out: list[dict | None] = []
    with conn.cursor() as cur:
        cur.executemany(
            "insert into devices (tenant_id, device_id, device_type, tags, attributes) values (%s, %s, %s, %s, %s) "
            "on conflict (tenant_id, device_id) do nothing returning *",
            [(tenant_id, d["device_id"], d.get("device_type"), d.get("tags") or [], Jsonb(d.get("attributes") or {}))
             for d in devices], returning=True)
        while True:
            out.append(cur.fetchone())
            if not cur.nextset():
                break
    return out


def get_device(conn: psycopg.Connection, *, tenant_id: str, device_id: str, for_update: bool = False) -> dict | None:
    q = "select * from devices where tenant_id = %s and device_id = %s" + (" for update" if for_update else "")
    return conn.execute(q, (tenant_id, device_id)).fetchone()


def list_devices(conn: psycopg.Connection, *, tenant_id: str, limit: int, after: str | None = None,
                 status: str | None = None, device_type: str | None = None, tag: str | None = None) -> list[dict]:
    """Devices ordered by id, starting after ``after`` (keyset pagination: stable under inserts)."""
    where, args = ["tenant_id = %s"], [tenant_id]
    for clause, value in (("device_id > %s", after), ("status = %s", status), ("device_type = %s", device_type),
                          ("tags @> array[%s]::text[]", tag)):
        if value is not None:
            where.append(clause)
            args.append(value)
    args.append(limit)
    return conn.execute(f"select * from devices where {' and '.join(where)} order by device_id limit %s",
                        args).fetchall()


def update_device(conn: psycopg.Connection, *, tenant_id: str, device_id: str, attributes: dict | None = None,
                  tags: list[str] | None = None, device_type: str | None = None,
                  merge_attributes: bool = True) -> dict | None:
    """Changes what is given; attributes merge into the existing ones (a JSON null value removes a key)."""
    sets, args = ["updated_at = now()", "version = version + 1"], []
    if attributes is not None:
        if merge_attributes:
            sets.append("attributes = jsonb_strip_nulls(attributes || %s)")
        else:
            sets.append("attributes = %s")
        args.append(Jsonb(attributes))
    if tags is not None:
        sets.append("tags = %s")
        args.append(tags)
    if device_type is not None:
        sets.append("device_type = %s")
        args.append(device_type)
    args += [tenant_id, device_id]
    return conn.execute(f"update devices set {', '.join(sets)} where tenant_id = %s and device_id = %s returning *",
                        args).fetchone()


def set_status(conn: psycopg.Connection, *, tenant_id: str, device_id: str, status: str) -> dict | None:
    if status not in LIFECYCLE:
        raise ValueError(f"unknown status {status!r}")
    return conn.execute(
        "update devices set status = %s, updated_at = now(), version = version + 1, "
        "decommissioned_at = case when %s = 'decommissioned' then now() else decommissioned_at end "
        "where tenant_id = %s and device_id = %s returning *",
        (status, status, tenant_id, device_id)).fetchone()


def active_jwt_keys(conn: psycopg.Connection, *, tenant_id: str, device_id: str) -> list[str]:
    rows = conn.execute("select public_key_pem from device_keys where tenant_id = %s and device_id = %s "
                        "and status = 'active' order by created_at", (tenant_id, device_id)).fetchall()
    return [r["public_key_pem"] for r in rows]


def record_connectivity(conn: psycopg.Connection, *, tenant_id: str,
                        changes: list[tuple[str, bool, object]]) -> list[dict]:
    """Applies ``(device_id, online, seen_at)`` for many devices in one statement; the first connection
    moves ``provisioned`` to ``active``. Returns the rows whose lifecycle status changed."""
    if not changes:
        return []
    rows = conn.execute(
        "with c(device_id, online, seen_at) as (select * from unnest(%s::text[], %s::boolean[], %s::timestamptz[])), "
        "u as (update devices d set online = c.online, "
        "  last_seen = greatest(d.last_seen, c.seen_at), "
        "  last_connected_at = case when c.online then greatest(d.last_connected_at, c.seen_at) else d.last_connected_at end, "
        "  status = case when c.online and d.status = 'provisioned' then 'active' else d.status end, "
        "  version = d.version + case when c.online and d.status = 'provisioned' then 1 else 0 end, "
        "  updated_at = case when c.online and d.status = 'provisioned' then now() else d.updated_at end "
        "  from c where d.tenant_id = %s and d.device_id = c.device_id "
        "  returning d.*, (select status from devices o where o.tenant_id = d.tenant_id and o.device_id = d.device_id) "
        "  as old_status) "
        "select * from u where status <> old_status",
        ([c[0] for c in changes], [c[1] for c in changes], [c[2] for c in changes], tenant_id)).fetchall()
    return rows
