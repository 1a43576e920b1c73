"""A tenant's own API clients (OAuth client credentials). The secret is returned once, stored as its SHA-256 digest (adr/0221)."""

from __future__ import annotations

import secrets

import psycopg

from gateway.auth.passwords import hash_secret, new_secret

_COLUMNS = "client_id, tenant_id, name, scopes, created_at, revoked_at"


def create_client(conn: psycopg.Connection, *, tenant_id: str, name: str, scopes: list[str]) -> tuple[dict, str]:
    client_id = "fsc_" + secrets.token_hex(8)
    secret = new_secret()
    row = conn.execute(f"insert into api_clients (client_id, tenant_id, name, secret_hash, scopes) "
                       f"values (%s, %s, %s, %s, %s) returning {_COLUMNS}",
                       (client_id, tenant_id, name, hash_secret(secret), scopes)).fetchone()
    return row, secret


def list_clients(conn: psycopg.Connection, *, tenant_id: str) -> list[dict]:
    return conn.execute(f"select {_COLUMNS} from api_clients where tenant_id = %s order by created_at",
                        (tenant_id,)).fetchall()


def get_client(conn: psycopg.Connection, *, tenant_id: str, client_id: str) -> dict | None:
    return conn.execute(f"select {_COLUMNS} from api_clients where tenant_id = %s and client_id = %s",
                        (tenant_id, client_id)).fetchone()


def revoke_client(conn: psycopg.Connection, *, tenant_id: str, client_id: str) -> dict | None:
    return conn.execute(f"update api_clients set revoked_at = coalesce(revoked_at, now()) "
                        f"where tenant_id = %s and client_id = %s returning {_COLUMNS}",
                        (tenant_id, client_id)).fetchone()
