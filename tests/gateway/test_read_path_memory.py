"""What the read path keeps in memory so a request needs no signature check and no Postgres round trip
(adr/0188), and that it never answers what it must not: a verified token is served from memory only until it
expires and never past a revocation; a device is remembered per tenant, only once Postgres has it."""

from __future__ import annotations

import time

import pytest

from gateway.auth.revocation import AuthState, TokenRevoked
from gateway.auth.tokens import KeyRing, TokenError
from gateway.db.session import Database
from gateway.known_devices import KnownDevices


@pytest.fixture
def ring(tmp_path):
    auth = AuthState("postgresql://unused")  # not started: its sets are set by hand below
    auth.live.set()
    return KeyRing(tmp_path / "keys", revocation=auth), auth


def test_a_token_is_checked_once_then_answered_from_memory_until_it_expires(ring, monkeypatch):
    keys, _auth = ring
    token = keys.issue(tenant_id="t1", client_id="c1", scopes=["telemetry:read"], ttl_s=60)
    assert keys.verified_in_memory(token) is None  # never seen: the signature must be checked first
    p = keys.verify(token)
    assert (p.tenant_id, p.client_id, p.scopes) == ("t1", "c1", frozenset({"telemetry:read"}))
    assert keys.verified_in_memory(token) == p
    real = time.time
    monkeypatch.setattr("gateway.auth.tokens.time.time", lambda: real() + 61)
    assert keys.verified_in_memory(token) is None  # expired: back to the full check, which refuses it


def test_a_forged_or_tampered_token_is_never_remembered(ring):
    keys, _auth = ring
    token = keys.issue(tenant_id="t1", client_id="c1", scopes=["telemetry:read"])
    head, body, sig = token.split(".")
    for bad in (f"{head}.{body}.{sig[:-4]}AAAA", f"{head}.{body[:-2]}xx.{sig}"):
        with pytest.raises(TokenError):
            keys.verify(bad)
        assert keys.verified_in_memory(bad) is None
    other = KeyRing(keys.dir.parent / "other-keys")  # a key this ring does not hold
    with pytest.raises(TokenError):
        keys.verify(other.issue(tenant_id="t1", client_id="c1", scopes=["telemetry:read"]))


def test_a_remembered_token_is_refused_once_its_client_is_revoked_or_its_tenant_suspended(ring):
    keys, auth = ring
    token = keys.issue(tenant_id="t1", client_id="c1", scopes=["telemetry:read"])
    keys.verify(token)
    auth.clients = {"c1"}
    with pytest.raises(TokenRevoked) as exc:
        keys.verified_in_memory(token)
    assert exc.value.code == "token_revoked"
    with pytest.raises(TokenRevoked):
        keys.verify(token)
    auth.clients, auth.tenants = set(), {"t1": "suspended"}
    with pytest.raises(TokenRevoked) as exc:
        keys.verified_in_memory(token)
    assert exc.value.code == "tenant_suspended"
    auth.tenants = {}
    auth.live.clear()  # listener down: the answer needs Postgres, so not from memory on the event loop
    assert keys.verified_in_memory(token) is None


def test_known_devices_remembers_found_devices_per_tenant_and_asks_again_for_missing_ones(stack, factory, settings):
    t, other = factory.tenant("known"), factory.tenant("known-other")
    dev = factory.device(t)
    db = Database(settings.app_dsn)
    db.open()
    try:
        known = KnownDevices(db)
        assert not known.known(t.tenant_id, dev.device_id)
        assert known.exists(t.tenant_id, dev.device_id) and known.known(t.tenant_id, dev.device_id)
        # the same device id under another tenant is another key, and RLS hides the first tenant's row
        assert not known.exists(other.tenant_id, dev.device_id) and not known.known(other.tenant_id, dev.device_id)
        assert not known.exists(t.tenant_id, "registered-later")
        factory.device(t, device_id="registered-later")
        assert known.exists(t.tenant_id, "registered-later")  # a miss was not remembered
        expired = KnownDevices(db, ttl_s=0)
        assert expired.exists(t.tenant_id, dev.device_id) and not expired.known(t.tenant_id, dev.device_id)
        with pytest.raises(ValueError):
            known.exists("", dev.device_id)
    finally:
        db.close()
