"""Tokens and tenants from a platform operator's and a tenant admin's point of view: platform tokens
manage tenants (and nothing else), tenants manage their own API clients (secret shown once, revocable),
signing keys rotate with old tokens still valid and every key published as JWKS."""

from __future__ import annotations

import subprocess
import sys

from tests.gateway.helpers import bearer, platform_token


def _token(gateway, client_id, secret, scope=None):
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    if scope:
        data["scope"] = scope
    return gateway.post("/v1/oauth/token", data=data)


def test_platform_admin_manages_tenants_but_sees_no_tenant_data(stack, factory, gateway, settings):
    ph = bearer(platform_token(settings))
    r = gateway.post("/v1/admin/tenants", json={"name": "platform-made-" + settings.root.name}, headers=ph)
    assert r.status_code == 201, r.text
    tenant = r.json()
    tok = _token(gateway, tenant["client_id"], tenant["client_secret"])
    assert tok.status_code == 200
    assert gateway.get(f"/v1/admin/tenants/{tenant['tenant_id']}", headers=ph).json()["status"] == "active"
    listed = gateway.get("/v1/admin/tenants", params={"limit": 1000}, headers=ph).json()["data"]
    assert tenant["tenant_id"] in [t["tenant_id"] for t in listed]

    assert gateway.get("/v1/devices", headers=ph).status_code == 403  # a platform token is no tenant token
    th = bearer(tok.json()["access_token"])
    r = gateway.get("/v1/admin/tenants", headers=th)
    assert r.status_code == 403 and r.json()["error"]["code"] == "platform_admin_required"
    assert gateway.get("/v1/admin/tenants").status_code == 401

    r = gateway.patch(f"/v1/admin/tenants/{tenant['tenant_id']}", json={"status": "suspended"}, headers=ph)
    assert r.json()["status"] == "suspended"
    r = _token(gateway, tenant["client_id"], tenant["client_secret"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"
    r = gateway.post("/v1/admin/tenants", json={"name": tenant["name"]}, headers=ph)
    assert r.status_code == 409 and r.json()["error"]["code"] == "tenant_exists"


def test_cli_mints_a_platform_token(stack, gateway, settings):
    out = subprocess.run([sys.executable, "-m", "fleetstream.cli", "--data-dir", str(settings.root), "admin",
                          "create-platform-token", "--ttl", "120"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = gateway.get("/v1/admin/tenants", headers=bearer(out.stdout.strip()))
    assert r.status_code == 200


def test_tenant_creates_scoped_clients_and_revokes_them(stack, factory, gateway):
    t = factory.tenant("clients")
    h = bearer(t.token(gateway))
    r = gateway.post("/v1/clients", json={"name": "dashboard", "scopes": ["devices:read"]}, headers=h)
    assert r.status_code == 201
    c = r.json()
    assert c["client_secret"] and c["scopes"] == ["devices:read"]
    listed = gateway.get("/v1/clients", headers=h).json()["data"]
    assert all("client_secret" not in x and "secret_hash" not in x for x in listed)

    tok = _token(gateway, c["client_id"], c["client_secret"])
    assert tok.status_code == 200 and tok.json()["scope"] == "devices:read"
    assert gateway.get("/v1/devices", headers=bearer(tok.json()["access_token"])).status_code == 200
    assert gateway.post("/v1/devices", json={"device_id": "x"}, headers=bearer(tok.json()["access_token"])).status_code == 403
    r = _token(gateway, c["client_id"], c["client_secret"], scope="devices:write")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_scope"
    r = gateway.post("/v1/clients", json={"name": "x", "scopes": ["platform:admin"]}, headers=h)
    assert r.status_code == 422

    assert gateway.post(f"/v1/clients/{c['client_id']}/revoke", headers=h).json()["revoked_at"]
    r = _token(gateway, c["client_id"], c["client_secret"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_client"


def test_signing_key_rotation_keeps_old_tokens_valid_and_publishes_jwks(stack, factory, gateway, settings):
    t = factory.tenant("rot")
    old = t.token(gateway)
    old_kids = {k["kid"] for k in gateway.get("/v1/.well-known/jwks.json").json()["keys"]}
    r = gateway.post("/v1/admin/signing-keys/rotate", headers=bearer(platform_token(settings)))
    assert r.status_code == 200
    new_kid = r.json()["kid"]
    jwks = gateway.get("/v1/.well-known/jwks.json").json()["keys"]
    assert {k["kid"] for k in jwks} == old_kids | {new_kid}
    assert all(k["kty"] == "EC" and k["alg"] == "ES256" for k in jwks)
    import jwt

    new = t.token(gateway)
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert jwt.get_unverified_header(old)["kid"] in old_kids
    for tok in (old, new):
        assert gateway.get("/v1/devices", headers=bearer(tok)).status_code == 200
