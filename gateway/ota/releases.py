"""Firmware releases of one tenant (``firmware_releases``). Every function runs inside a tenant
transaction and names the tenant explicitly as well."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors


class ReleaseExistsError(Exception):
    pass


def create_release(conn: psycopg.Connection, *, tenant_id: str, device_type: str, version: str, sha256: str,
                   size: int, manifest_json: str, signature: str, key_id: str) -> dict:
    try:
        with conn.transaction():  # a savepoint: the caller's transaction survives a duplicate
            return conn.execute(
                "insert into firmware_releases (tenant_id, device_type, version, sha256, size, manifest_json, "
                "signature, key_id) values (%s, %s, %s, %s, %s, %s, %s, %s) returning *",
                (tenant_id, device_type, version, sha256, size, manifest_json, signature, key_id)).fetchone()
    except pg_errors.UniqueViolation as exc:
        raise ReleaseExistsError(f"{device_type} {version} already exists; versions are immutable") from exc


def get_release(conn: psycopg.Connection, *, tenant_id: str, device_type: str, version: str) -> dict | None:
    return conn.execute("select * from firmware_releases where tenant_id = %s and device_type = %s and version = %s",
                        (tenant_id, device_type, version)).fetchone()


def list_releases(conn: psycopg.Connection, *, tenant_id: str, device_type: str | None = None) -> list[dict]:
    if device_type is None:
        return conn.execute("select * from firmware_releases where tenant_id = %s order by device_type, created_at",
                            (tenant_id,)).fetchall()
    return conn.execute("select * from firmware_releases where tenant_id = %s and device_type = %s "
                        "order by created_at", (tenant_id, device_type)).fetchall()


def release_with_sha(conn: psycopg.Connection, *, tenant_id: str, sha256: str) -> dict | None:
    return conn.execute("select * from firmware_releases where tenant_id = %s and sha256 = %s limit 1",
                        (tenant_id, sha256)).fetchone()
