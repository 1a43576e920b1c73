"""Versioned SQL migrations, applied in order by the owner role; creates the application role.

The application role (``fleetstream_app``) is neither owner nor superuser and has NOBYPASSRLS, so the
policies hold for every query the gateway makes (adr/0004).
"""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql

APP_ROLE = "fleetstream_app"
APP_TABLE_GRANTS = "select, insert, update, delete"


def migrations() -> list[tuple[str, str]]:
    folder = resources.files("gateway.db").joinpath("migrations")
    return sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))


def migrate(owner_dsn: str, app_password: str) -> list[str]:
    applied_now = []
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(7262001)")  # several processes may start at once
        try:
            conn.execute("create table if not exists schema_migrations "
                         "(version text primary key, applied_at timestamptz not null default now())")
            _ensure_app_role(conn, app_password)
            done = {r[0] for r in conn.execute("select version from schema_migrations")}
            for name, text in migrations():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(text)
                    conn.execute("insert into schema_migrations(version) values (%s)", (name,))
                applied_now.append(name)
            _grant(conn)
        finally:
            conn.execute("select pg_advisory_unlock(7262001)")
    return applied_now


def _ensure_app_role(conn: psycopg.Connection, password: str) -> None:
    exists = conn.execute("select 1 from pg_roles where rolname=%s", (APP_ROLE,)).fetchone()
    verb = "alter" if exists else "create"
    conn.execute(sql.SQL("{} role {} login nosuperuser nobypassrls nocreatedb nocreaterole password {}").format(
        sql.SQL(verb), sql.Identifier(APP_ROLE), sql.Literal(password)))


def _grant(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("grant usage on schema public to {}").format(sql.Identifier(APP_ROLE)))
    conn.execute(sql.SQL("grant {} on all tables in schema public to {}").format(
        sql.SQL(APP_TABLE_GRANTS), sql.Identifier(APP_ROLE)))
    conn.execute(sql.SQL("revoke all on schema_migrations from {}").format(sql.Identifier(APP_ROLE)))
    conn.execute(sql.SQL("grant usage on all sequences in schema public to {}").format(sql.Identifier(APP_ROLE)))
    conn.execute(sql.SQL("grant execute on function authenticate_client(text) to {}").format(
        sql.Identifier(APP_ROLE)))
