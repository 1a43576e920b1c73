"""A device's credentials: X.509 certificates (serial, fingerprint, status) and ES256 JWT public keys."""

from __future__ import annotations

import datetime as dt

import psycopg


def add_certificate(conn: psycopg.Connection, *, tenant_id: str, device_id: str, serial: str, fingerprint: str,
                    not_after: dt.datetime) -> dict:
    return conn.execute(
        "insert into device_certificates (tenant_id, device_id, serial, fingerprint_sha256, not_after) "
        "values (%s, %s, %s, %s, %s) returning *", (tenant_id, device_id, serial, fingerprint, not_after)).fetchone()


def add_certificates(conn: psycopg.Connection, *, tenant_id: str, issued: list[tuple[str, str, str, dt.datetime]]) -> None:
    """``add_certificate`` for many ``(device_id, serial, fingerprint, not_after)`` in one pipelined batch."""
    if not issued:
        return
    with conn.cursor() as cur:
        cur.executemany("insert into device_certificates (tenant_id, device_id, serial, fingerprint_sha256, not_after) "
                        "values (%s, %s, %s, %s, %s)", [(tenant_id, *row) for row in issued])


def list_certificates(conn: psycopg.Connection, *, tenant_id: str, device_id: str) -> list[dict]:
    return conn.execute("select * from device_certificates where tenant_id = %s and device_id = %s "
                        "order by created_at", (tenant_id, device_id)).fetchall()


def revoke_certificate(conn: psycopg.Connection, *, tenant_id: str, device_id: str, serial: str) -> dict | None:
    return conn.execute(
        "update device_certificates set status = 'revoked', revoked_at = coalesce(revoked_at, now()) "
        "where tenant_id = %s and device_id = %s and serial = %s returning *",
        (tenant_id, device_id, serial)).fetchone()


def revoke_all(conn: psycopg.Connection, *, tenant_id: str, device_id: str) -> tuple[int, int]:
    """Decommissioning: every certificate and JWT key of the device; returns how many of each."""
    certs = conn.execute("update device_certificates set status = 'revoked', revoked_at = now() "
                         "where tenant_id = %s and device_id = %s and status = 'active'", (tenant_id, device_id))
    keys = conn.execute("update device_keys set status = 'revoked', revoked_at = now() "
                        "where tenant_id = %s and device_id = %s and status = 'active'", (tenant_id, device_id))
    return certs.rowcount, keys.rowcount


def revoked_serials(conn: psycopg.Connection, *, tenant_id: str) -> list[tuple[str, dt.datetime]]:
    rows = conn.execute("select serial, revoked_at from device_certificates where tenant_id = %s "
                        "and status = 'revoked' order by revoked_at", (tenant_id,)).fetchall()
    return [(r["serial"], r["revoked_at"]) for r in rows]


def add_key(conn: psycopg.Connection, *, tenant_id: str, device_id: str, key_id: str, public_key_pem: str) -> dict:
    """A key whose possession the caller verified. Raises ``psycopg.errors.UniqueViolation`` when this device
    already has (or had: revoked keys are not re-activated) this key; other devices and tenants do not matter."""
    return conn.execute("insert into device_keys (key_id, tenant_id, device_id, public_key_pem, proven_at) "
                        "values (%s, %s, %s, %s, now()) returning *",
                        (key_id, tenant_id, device_id, public_key_pem)).fetchone()


def list_keys(conn: psycopg.Connection, *, tenant_id: str, device_id: str) -> list[dict]:
    return conn.execute("select * from device_keys where tenant_id = %s and device_id = %s order by created_at",
                        (tenant_id, device_id)).fetchall()


def revoke_key(conn: psycopg.Connection, *, tenant_id: str, device_id: str, key_id: str) -> dict | None:
    return conn.execute("update device_keys set status = 'revoked', revoked_at = coalesce(revoked_at, now()) "
                        "where tenant_id = %s and device_id = %s and key_id = %s returning *",
                        (tenant_id, device_id, key_id)).fetchone()


def device_key(conn: psycopg.Connection, *, tenant_id: str, device_id: str, key_id: str) -> dict | None:
    """Device JWT verification, before any tenant transaction: the active key ``key_id`` of exactly this
    tenant's device, with the device's and the tenant's status (definer function ``device_key_lookup``)."""
    return conn.execute("select * from device_key_lookup(%s, %s, %s)", (tenant_id, device_id, key_id)).fetchone()
