"""Single sign-on against a real OpenID provider process (oidc-provider-mock, started here), in the browser:
the tenant configures its provider and a group → role map through the API; a person picks their identity
at the provider, comes back signed in with the mapped role; someone whose groups map to no role is turned
away with a reason; a forged callback (wrong state) signs nobody in (issue 17, adr/0165)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import PORT_OFFSET
from tests.gateway.helpers import bearer
from tests.utils.factories import wait_for

WAIT = 90_000
USERS = [{"sub": "alice-123", "email": "alice@corp.test", "name": "Alice", "groups": ["fleet-ops", "staff"]},
         {"sub": "bob-456", "email": "bob@corp.test", "groups": ["staff"]}]


def _free_port() -> int:
    """A port nobody listens on, below the ephemeral range (other test stacks share this machine)."""
    for port in range(28400 + PORT_OFFSET, 32700, 7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port for the OIDC provider")


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    port = _free_port()
    args = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--host", "127.0.0.1"]
    for u in USERS:
        args += ["--user-claims", json.dumps(u)]
    log = open(tmp_path_factory.mktemp("oidc") / "provider.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and _ours(issuer), timeout=60, what="the OIDC provider")
        yield issuer
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _ours(issuer: str) -> bool:
    try:
        return httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()["issuer"] == issuer
    except (httpx.HTTPError, ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def sso_tenant(stack, factory, gateway, provider, settings):
    t = factory.tenant("sso")
    h = bearer(t.token(gateway))
    gateway = httpx.Client(base_url=gateway.base_url, timeout=60)  # a busy machine: more than the shared 10 s
    # our client at the provider, with a secret the provider checks
    reg = httpx.post(f"{provider}/oauth2/clients", json={"redirect_uris": [f"http://{settings.host}:{settings.gateway_port}/v1/sso/callback"],
                                                         "token_endpoint_auth_method": "client_secret_basic"})
    assert reg.status_code in (200, 201), reg.text
    client = reg.json()
    r = gateway.put("/v1/sso", headers=h, json={"issuer": provider, "client_id": client["client_id"],
                                                 "client_secret": client["client_secret"], "role_claim": "groups",
                                                 "role_map": {"fleet-ops": "operator", "fleet-admins": "admin"}})
    assert r.status_code == 200, r.text
    assert "client_secret" not in gateway.get("/v1/sso", headers=h).json()
    return t, h


def test_sso_signs_in_with_the_mapped_role(browser, sso_tenant, gateway, settings):
    t, h = sso_tenant
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"http://{settings.host}:{settings.gateway_port}/console/?tenant={t.name}")
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.get_by_role("button", name="alice-123").click()  # the provider's own page: pick who you are
    expect(page.get_by_role("heading", name="Fleet", exact=True)).to_be_visible(timeout=WAIT)
    expect(page.locator("#who")).to_have_text("alice@corp.test · operator")
    users = {u["email"]: u for u in gateway.get("/v1/users", headers=h).json()["data"]}
    assert users["alice@corp.test"]["role"] == "operator" and users["alice@corp.test"]["has_sso"]
    assert not users["alice@corp.test"]["has_password"]
    entries = gateway.get("/v1/audit", headers=h, params={"target": f"user:{users['alice@corp.test']['id']}"}).json()["data"]
    assert any(e["action"] == "session.login" and e["details"]["method"] == "sso" for e in entries)
    ctx.close()


def test_unmapped_groups_are_turned_away(browser, sso_tenant, gateway, settings):
    t, h = sso_tenant
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"http://{settings.host}:{settings.gateway_port}/console/?tenant={t.name}")
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.get_by_role("button", name="bob-456").click()
    expect(page.get_by_role("alert")).to_contain_text("no_role", timeout=WAIT)
    assert "bob@corp.test" not in {u["email"] for u in gateway.get("/v1/users", headers=h).json()["data"]}
    ctx.close()


def test_a_callback_without_this_browsers_state_signs_nobody_in(sso_tenant, settings):
    with httpx.Client(base_url=f"http://{settings.host}:{settings.gateway_port}") as c:
        r = c.get("/v1/sso/callback", params={"code": "stolen", "state": "guessed"})
        assert r.status_code == 303 and "sso_error=no_flow" in r.headers["location"]
        assert "fs_session" not in r.headers.get("set-cookie", "")
        assert c.get("/v1/session").status_code == 401
