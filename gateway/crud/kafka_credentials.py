"""Tenant Kafka credentials' records (adr/0145): who has which SCRAM user, in which state. No secret is stored."""

from __future__ import annotations

import psycopg

_COLUMNS = ("id, tenant_id, username, name, status, topics, group_prefix, created_by, created_at, activated_at, "
            "revoked_at")


def begin(conn: psycopg.Connection, *, tenant_id: str, username: str, name: str, topics: list[str],
          group_prefix: str, created_by: str) -> dict:
    """The intent, committed before Kafka is touched: a crash after it leaves a row the sweep can undo."""
    return conn.execute(f"insert into kafka_credentials (tenant_id, username, name, topics, group_prefix, created_by) "
                        f"values (%s, %s, %s, %s, %s, %s) returning {_COLUMNS}",
                        (tenant_id, username, name, topics, group_prefix, created_by)).fetchone()


def activate(conn: psycopg.Connection, *, tenant_id: str, credential_id: str) -> dict | None:
    return conn.execute(f"update kafka_credentials set status = 'active', activated_at = now() "
                        f"where tenant_id = %s and id = %s and status = 'pending' returning {_COLUMNS}",
                        (tenant_id, credential_id)).fetchone()


def mark_failing(conn: psycopg.Connection, *, tenant_id: str, credential_id: str, error: str) -> None:
    """A pending issue is given up: from now on it is only ever removed from Kafka, never activated."""
    conn.execute("update kafka_credentials set status = 'failing', last_error = %s "
                 "where tenant_id = %s and id = %s and status = 'pending'", (error[:500], tenant_id, credential_id))


def mark_failed(conn: psycopg.Connection, *, tenant_id: str, credential_id: str) -> None:
    """Kafka holds nothing of it any more: the row stays as the record of the attempt."""
    conn.execute("update kafka_credentials set status = 'failed' where tenant_id = %s and id = %s "
                 "and status = 'failing'", (tenant_id, credential_id))


def mark_revoking(conn: psycopg.Connection, *, tenant_id: str, credential_id: str) -> dict | None:
    """Active or already revoking: revoking (the caller then removes it from Kafka). Other states: unchanged."""
    return conn.execute(f"update kafka_credentials set status = case when status in ('active', 'revoking') "
                        f"then 'revoking' else status end where tenant_id = %s and id = %s returning {_COLUMNS}",
                        (tenant_id, credential_id)).fetchone()


def mark_revoked(conn: psycopg.Connection, *, tenant_id: str, credential_id: str) -> dict | None:
    return conn.execute(f"update kafka_credentials set status = 'revoked', revoked_at = coalesce(revoked_at, now()) "
                        f"where tenant_id = %s and id = %s and status = 'revoking' returning {_COLUMNS}",
                        (tenant_id, credential_id)).fetchone()


def get(conn: psycopg.Connection, *, tenant_id: str, credential_id: str) -> dict | None:
    return conn.execute(f"select {_COLUMNS} from kafka_credentials where tenant_id = %s and id = %s",
                        (tenant_id, credential_id)).fetchone()


def list_all(conn: psycopg.Connection, *, tenant_id: str) -> list[dict]:
    return conn.execute(f"select {_COLUMNS} from kafka_credentials where tenant_id = %s "
                        f"and status not in ('failing', 'failed') order by created_at", (tenant_id,)).fetchall()


def unsettled(conn: psycopg.Connection, *, tenant_id: str, pending_older_than_s: float) -> list[dict]:
    return conn.execute(f"select {_COLUMNS} from kafka_credentials where tenant_id = %s and "
                        f"((status = 'pending' and created_at < now() - make_interval(secs => %s)) "
                        f"or status in ('failing', 'revoking'))", (tenant_id, pending_older_than_s)).fetchall()


def unsettled_everywhere(conn: psycopg.Connection, *, pending_older_than_s: float) -> list[tuple[str, str]]:
    rows = conn.execute("select tenant_id, credential_id from kafka_credentials_unsettled(make_interval(secs => %s))",
                        (pending_older_than_s,)).fetchall()
    return [(str(r["tenant_id"]), str(r["credential_id"])) for r in rows]
