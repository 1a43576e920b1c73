"""Tenants and their API clients. Creating a tenant sets the new tenant for its own transaction, so it
works under FORCE RLS for any role allowed to insert. Listing and changing tenants needs a platform
transaction (``platform_tx``: the ``platform_admin`` policy on the tenants table only)."""

from __future__ import annotations

import secrets
import uuid

import psycopg

from gateway.auth.passwords import hash_secret, new_secret
from gateway.auth.tokens import ALL_SCOPES


def create_tenant(conn: psycopg.Connection, *, name: str) -> dict:
    tenant_id = str(uuid.uuid4())
    client_id = "fsc_" + secrets.token_hex(8)
    secret = new_secret()
    with conn.transaction():
        conn.execute("select set_config('app.tenant_id', %s, true)", (tenant_id,))
        conn.execute("insert into tenants (id, name) values (%s, %s)", (tenant_id, name))
        conn.execute("insert into api_clients (client_id, tenant_id, name, secret_hash, scopes) "
                     "values (%s, %s, %s, %s, %s)",
                     (client_id, tenant_id, "bootstrap", hash_secret(secret), list(ALL_SCOPES)))
        conn.execute("insert into audit_log (tenant_id, actor, action, target) values (%s, %s, %s, %s)",
                     (tenant_id, "platform", "tenant.create", f"tenant:{tenant_id}"))
    return {"tenant_id": tenant_id, "name": name, "client_id": client_id, "client_secret": secret,
            "scopes": list(ALL_SCOPES)}


def find_client(conn: psycopg.Connection, client_id: str) -> dict | None:
    row = conn.execute("select * from authenticate_client(%s)", (client_id,)).fetchone()
    if row is None:
        return None
    return row if isinstance(row, dict) else dict(zip(("tenant_id", "secret_hash", "scopes", "tenant_status"), row,
                                                      strict=True))


# -- platform administration (a platform transaction) ----------------------------------------------------
def list_tenants(conn: psycopg.Connection, *, limit: int, after: str | None = None) -> list[dict]:
    if after:
        return conn.execute("select * from tenants where id > %s order by id limit %s", (after, limit)).fetchall()
    return conn.execute("select * from tenants order by id limit %s", (limit,)).fetchall()


def get_tenant(conn: psycopg.Connection, *, tenant_id: str) -> dict | None:
    return conn.execute("select * from tenants where id = %s", (tenant_id,)).fetchone()


def update_tenant(conn: psycopg.Connection, *, tenant_id: str, name: str | None = None,
                  status: str | None = None) -> dict | None:
    return conn.execute("update tenants set name = coalesce(%s, name), status = coalesce(%s, status) "
                        "where id = %s returning *", (name, status, tenant_id)).fetchone()


# -- the tenant's own settings (a tenant transaction: RLS shows it only its own row) ------------------------
def get_own(conn: psycopg.Connection, *, tenant_id: str, for_update: bool = False) -> dict | None:
    lock = " for update" if for_update else ""
    return conn.execute(f"select * from tenants where id = %s{lock}", (tenant_id,)).fetchone()


def set_export_telemetry(conn: psycopg.Connection, *, tenant_id: str, on: bool) -> dict | None:
    return conn.execute("update tenants set export_telemetry = %s where id = %s returning *", (on, tenant_id)).fetchone()
