"""Row-level security, from the point of view of a tenant whose neighbour has a bug: with raw SQL as the
application role, no tenant set sees nothing, tenant A's setting never shows tenant B's rows, and
writing a row for another tenant is refused by the policy's WITH CHECK."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row


def _tenant_tables(owner_dsn: str) -> list[str]:
    with psycopg.connect(owner_dsn) as conn:
        return [r[0] for r in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind = 'r' and (c.relname = 'tenants' or exists ("
            "  select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped))"
            " order by 1")]


@pytest.fixture(scope="module")
def two_tenants(stack, factory, gateway):
    a, b = factory.tenant("rls-a"), factory.tenant("rls-b")
    for t in (a, b):  # a row in every control-plane table of ours, for both
        dev = factory.device(t)
        tok = t.token(gateway)
        h = {"Authorization": f"Bearer {tok}"}
        from tests.gateway.helpers import key_registration, new_key_pem

        assert gateway.post(f"/v1/devices/{dev.device_id}/keys",
                            json=key_registration(new_key_pem()[0], t.tenant_id, dev.device_id),
                            headers=h).status_code == 201
        assert gateway.post("/v1/claim-tokens", json={"max_uses": 2}, headers=h).status_code == 201
    return a, b


def test_every_tenant_table_forces_rls(stack, settings):
    with psycopg.connect(settings.owner_dsn) as conn:
        rows = conn.execute("select relname, relrowsecurity, relforcerowsecurity from pg_class "
                            "where relname = any(%s)", (_tenant_tables(settings.owner_dsn),)).fetchall()
    assert len(rows) >= 8  # tenants, api_clients, devices and this tables at least
    unprotected = [r[0] for r in rows if not (r[1] and r[2])]
    assert unprotected == [], f"tables without ENABLE+FORCE RLS: {unprotected}"


def test_no_tenant_set_sees_nothing(two_tenants, settings):
    tables = _tenant_tables(settings.owner_dsn)
    with psycopg.connect(settings.app_dsn) as conn:
        role = conn.execute("select current_user, rolsuper, rolbypassrls from pg_roles where rolname = current_user").fetchone()
        assert role == ("fleetstream_app", False, False)
        for t in tables:
            (n,) = conn.execute(f'select count(*) from "{t}"').fetchone()
            assert n == 0, f"{t}: {n} rows visible with no tenant set"


def test_tenant_a_never_sees_tenant_b(two_tenants, settings):
    a, b = two_tenants
    tables = _tenant_tables(settings.owner_dsn)
    with psycopg.connect(settings.app_dsn, row_factory=dict_row) as conn:
        for t in tables:
            col = "id" if t == "tenants" else "tenant_id"
            with conn.transaction():
                conn.execute("select set_config('app.tenant_id', %s, true)", (a.tenant_id,))
                seen = {str(r[col]) for r in conn.execute(f'select {col} from "{t}"')}
            assert seen <= {a.tenant_id}, f"{t}: tenant A saw {seen - {a.tenant_id}}"
        with conn.transaction():
            conn.execute("select set_config('app.tenant_id', %s, true)", (a.tenant_id,))
            for t in ("devices", "device_keys", "claim_tokens", "audit_log", "api_clients"):
                (n,) = conn.execute(f"select count(*) as n from {t}").fetchone().values()
                assert n >= 1, f"{t}: tenant A should see its own rows"


WRITES_FOR_ANOTHER_TENANT = [
    "insert into devices (tenant_id, device_id) values (%(b)s, 'planted')",
    "insert into device_types (tenant_id, name) values (%(b)s, 'planted')",
    "insert into audit_log (tenant_id, actor, action, target) values (%(b)s, 'x', 'x', 'x')",
    "insert into claim_tokens (tenant_id, token_hash, expires_at, max_uses) values (%(b)s, 'h', now(), 1)",
    "insert into api_clients (client_id, tenant_id, secret_hash, scopes) values ('planted', %(b)s, 'x', '{}')",
    "update devices set tenant_id = %(b)s",
]


@pytest.mark.parametrize("statement", WRITES_FOR_ANOTHER_TENANT)
def test_writing_a_row_for_another_tenant_is_refused(two_tenants, settings, statement):
    a, b = two_tenants
    with psycopg.connect(settings.app_dsn) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            with conn.transaction():
                conn.execute("select set_config('app.tenant_id', %s, true)", (a.tenant_id,))
                conn.execute(statement, {"b": b.tenant_id})


def test_audit_log_is_append_only(two_tenants, settings):
    a, _ = two_tenants
    with psycopg.connect(settings.app_dsn) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            with conn.transaction():
                conn.execute("select set_config('app.tenant_id', %s, true)", (a.tenant_id,))
                conn.execute("delete from audit_log")
