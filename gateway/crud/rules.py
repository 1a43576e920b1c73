"""Rules of one tenant (adr/0055). Every function runs inside a tenant transaction (``Database.tenant_tx``)
and names the tenant explicitly. Each save writes a new row in ``rule_versions``."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb


def create_rule(conn: psycopg.Connection, *, tenant_id: str, name: str, document: dict, enabled: bool) -> dict:
    row = conn.execute("insert into rules (tenant_id, name, document, enabled) values (%s, %s, %s, %s) returning *",
                       (tenant_id, name, Jsonb(document), enabled)).fetchone()
    _version(conn, row)
    return row


def update_rule(conn: psycopg.Connection, *, tenant_id: str, rule_id: str, document: dict | None = None,
                enabled: bool | None = None, expected_version: int | None = None) -> dict | None:
    """None when the rule does not exist; raises ``VersionConflict`` on a stale ``expected_version``."""
    cur = get_rule(conn, tenant_id=tenant_id, rule_id=rule_id, for_update=True)
    if cur is None:
        return None
    if expected_version is not None and expected_version != cur["version"]:
        raise VersionConflict(cur["version"])
    doc = document if document is not None else cur["document"]
    row = conn.execute(
        "update rules set document = %s, name = %s, enabled = %s, version = version + 1, updated_at = now() "
        "where tenant_id = %s and rule_id = %s returning *",
        (Jsonb(doc), doc["name"], cur["enabled"] if enabled is None else enabled, tenant_id, rule_id)).fetchone()
    _version(conn, row)
    return row


def delete_rule(conn: psycopg.Connection, *, tenant_id: str, rule_id: str) -> bool:
    return conn.execute("delete from rules where tenant_id = %s and rule_id = %s", (tenant_id, rule_id)).rowcount > 0


def get_rule(conn: psycopg.Connection, *, tenant_id: str, rule_id: str, for_update: bool = False) -> dict | None:
    q = "select * from rules where tenant_id = %s and rule_id = %s" + (" for update" if for_update else "")
    return conn.execute(q, (tenant_id, rule_id)).fetchone()


def list_rules(conn: psycopg.Connection, *, tenant_id: str, enabled: bool | None = None) -> list[dict]:
    q, args = "select * from rules where tenant_id = %s", [tenant_id]
    if enabled is not None:
        q += " and enabled = %s"
        args.append(enabled)
    return conn.execute(q + " order by created_at", args).fetchall()


def rule_versions(conn: psycopg.Connection, *, tenant_id: str, rule_id: str) -> list[dict]:
    return conn.execute("select version, enabled, document, created_at from rule_versions "
                        "where tenant_id = %s and rule_id = %s order by version", (tenant_id, rule_id)).fetchall()


def _version(conn: psycopg.Connection, row: dict) -> None:
    conn.execute("insert into rule_versions (tenant_id, rule_id, version, enabled, document) values (%s, %s, %s, %s, %s)",
                 (row["tenant_id"], row["rule_id"], row["version"], row["enabled"], Jsonb(row["document"])))


class VersionConflict(Exception):
    def __init__(self, current: int):
        super().__init__(f"current version is {current}")
        self.current = current
