"""Device types (profiles): defaults every new device of the type starts with."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb


def create(conn: psycopg.Connection, *, tenant_id: str, name: str, description: str, default_tags: list[str],
           default_attributes: dict, metrics: dict | None = None) -> dict:
    """Raises ``psycopg.errors.UniqueViolation`` when the name is taken."""
    return conn.execute("insert into device_types (tenant_id, name, description, default_tags, default_attributes, "
                        "metrics) values (%s, %s, %s, %s, %s, %s) returning *",
                        (tenant_id, name, description, default_tags, Jsonb(default_attributes),
                         Jsonb(metrics or {}))).fetchone()


def set_metrics(conn: psycopg.Connection, *, tenant_id: str, name: str, metrics: dict) -> dict | None:
    """Replaces the type's metric declarations; None when there is no such type."""
    return conn.execute("update device_types set metrics = %s where tenant_id = %s and name = %s returning *",
                        (Jsonb(metrics), tenant_id, name)).fetchone()


def get(conn: psycopg.Connection, *, tenant_id: str, name: str) -> dict | None:
    return conn.execute("select * from device_types where tenant_id = %s and name = %s", (tenant_id, name)).fetchone()


def list_types(conn: psycopg.Connection, *, tenant_id: str) -> list[dict]:
    return conn.execute("select * from device_types where tenant_id = %s order by name", (tenant_id,)).fetchall()


def delete(conn: psycopg.Connection, *, tenant_id: str, name: str) -> bool:
    return conn.execute("delete from device_types where tenant_id = %s and name = %s", (tenant_id, name)).rowcount == 1


def apply_profile(conn: psycopg.Connection, *, tenant_id: str, device_type: str | None, tags: list[str] | None,
                  attributes: dict | None) -> tuple[list[str], dict]:
    """The device's tags and attributes with its type's defaults under them (what is given wins)."""
    tags, attributes = list(tags or []), dict(attributes or {})
    profile = get(conn, tenant_id=tenant_id, name=device_type) if device_type else None
    if profile is None:
        return tags, attributes
    merged_tags = list(dict.fromkeys([*profile["default_tags"], *tags]))
    return merged_tags, {**profile["default_attributes"], **attributes}
