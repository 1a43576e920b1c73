"""Server-mode tenant isolation (adr/0062): ClickHouse row policies as a second wall behind the store.

With a ClickHouse server the gateway reads as ``fleetstream_reader``, whose every SELECT on a tenant table
is filtered by a row policy to the tenant named in the query's ``SQL_fleetstream_tenant`` setting; the
store sets it on every query (``TelemetryStore``). A query that forgets its ``WHERE tenant_id`` therefore
still sees one tenant, and a query without the setting sees nothing. The sinks write as
``fleetstream_writer`` (INSERT only). chdb has no users, roles or row policies (ACCESS_DENIED) and no
custom settings, so embedded mode relies on the store alone.

These statements have not been run here (no ClickHouse server is installable on this machine); they are
applied once by an administrator: ``fleetstream`` has no code path that grants itself rights.
"""

from __future__ import annotations

TENANT_SETTING = "SQL_fleetstream_tenant"
TENANT_TABLES = ("telemetry", "telemetry_1m", "telemetry_1h", "telemetry_latest", "rollup_marks", "device_events",
                 "alerts", "command_history", "tenant_retention", "rejections")


def isolation_statements(db: str = "fleetstream", *, reader_password: str, writer_password: str) -> list[str]:
    """DDL for the reader and writer users and the row policies (the server must allow the ``SQL_`` custom
    settings prefix: ``<custom_settings_prefixes>SQL_</custom_settings_prefixes>``)."""
    out = [
        f"CREATE USER IF NOT EXISTS fleetstream_reader IDENTIFIED WITH sha256_password BY '{reader_password}'",
        f"CREATE USER IF NOT EXISTS fleetstream_writer IDENTIFIED WITH sha256_password BY '{writer_password}'",
        f"GRANT SELECT ON {db}.* TO fleetstream_reader",
        f"GRANT INSERT, SELECT ON {db}.* TO fleetstream_writer",  # SELECT: the sink recomputes rollups
        f"GRANT INSERT ON {db}.tenant_retention TO fleetstream_reader",  # PUT /v1/telemetry/retention
    ]
    for table in TENANT_TABLES:
        out.append(f"CREATE ROW POLICY IF NOT EXISTS tenant_isolation ON {db}.{table} FOR SELECT "
                   f"USING tenant_id = getSetting('{TENANT_SETTING}') TO fleetstream_reader")
        # the writer is not a reader of tenant data: a permissive policy keeps its rollup refresh working
        out.append(f"CREATE ROW POLICY IF NOT EXISTS sink_all ON {db}.{table} FOR SELECT USING 1 TO fleetstream_writer")
    return out


def query_settings(embedded: bool, tenant_id: str) -> dict[str, str] | None:
    """Per-query settings that name the tenant to the server's row policies (none for chdb)."""
    return None if embedded else {TENANT_SETTING: tenant_id}
