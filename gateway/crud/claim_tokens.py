"""Claim tokens: a tenant lets devices register themselves (fleet provisioning). Only a SHA-256 of the
secret is stored; the secret is shown once."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import psycopg

PREFIX = "fsct_"


def token_hash(secret: str) -> str:
    # The secret has 256 bits of entropy: a plain hash is enough (no dictionary to slow down).
    return hashlib.sha256(secret.encode()).hexdigest()


def create(conn: psycopg.Connection, *, tenant_id: str, name: str, expires_at: dt.datetime, max_uses: int,
           device_type: str | None, tags: list[str]) -> tuple[dict, str]:
    secret = PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "insert into claim_tokens (tenant_id, token_hash, name, expires_at, max_uses, device_type, tags) "
        "values (%s, %s, %s, %s, %s, %s, %s) returning *",
        (tenant_id, token_hash(secret), name, expires_at, max_uses, device_type, tags)).fetchone()
    return row, secret


def get(conn: psycopg.Connection, *, tenant_id: str, token_id: str) -> dict | None:
    return conn.execute("select * from claim_tokens where tenant_id = %s and id = %s",
                        (tenant_id, token_id)).fetchone()


def list_tokens(conn: psycopg.Connection, *, tenant_id: str) -> list[dict]:
    return conn.execute("select * from claim_tokens where tenant_id = %s order by created_at desc",
                        (tenant_id,)).fetchall()


def revoke(conn: psycopg.Connection, *, tenant_id: str, token_id: str) -> dict | None:
    return conn.execute("update claim_tokens set revoked_at = coalesce(revoked_at, now()) "
                        "where tenant_id = %s and id = %s returning *", (tenant_id, token_id)).fetchone()


def use(conn: psycopg.Connection, secret: str) -> dict:
    """Spends one use (definer function; no tenant needed). ``outcome``: ok | invalid | expired | exhausted."""
    return conn.execute("select * from claim_token_use(%s)", (token_hash(secret),)).fetchone()
