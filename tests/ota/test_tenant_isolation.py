"""A tenant's releases and campaigns are walled off by the database itself, not only by route code:
every OTA table has row-level security enabled and forced."""

from __future__ import annotations

import psycopg

OTA_TABLES = ("firmware_releases", "ota_campaigns", "ota_campaign_devices", "ota_commands")


def test_every_ota_table_forces_row_level_security(infra, settings):
    with psycopg.connect(settings.owner_dsn) as conn:
        rows = dict(conn.execute("select relname, relrowsecurity and relforcerowsecurity from pg_class "
                                 "where relname = any(%s)", (list(OTA_TABLES),)).fetchall())
    assert rows == dict.fromkeys(OTA_TABLES, True)


def test_application_role_sees_no_ota_rows_without_a_tenant(infra, settings):
    with psycopg.connect(settings.app_dsn) as conn:
        for t in OTA_TABLES:
            assert conn.execute(f"select count(*) from {t}").fetchone()[0] == 0
