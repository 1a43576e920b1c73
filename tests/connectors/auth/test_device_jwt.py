"""Device JWT verification, from an ingest endpoint's point of view: a device's own short-lived token is
accepted and names the tenant from the key lookup; expired, not-yet-valid, wrong-audience, unknown-key,
over-long, foreign-subject and replayed tokens are refused with stable codes. Pure logic: no services."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.auth.device_jwt import (
    DeviceJwtVerifier,
    DeviceKey,
    DeviceTokenError,
    ReplayCache,
    key_id,
    sign_device_jwt,
)


def _key():
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()
    pub = k.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pub


@pytest.fixture
def device():
    priv, pub = _key()
    kid = key_id(pub)
    keys = {kid: DeviceKey(kid, "tenant-a", "meter-1", pub)}
    return priv, kid, DeviceJwtVerifier(keys.get)


def _code(verifier, token) -> str:
    with pytest.raises(DeviceTokenError) as e:
        verifier.verify(token)
    return e.value.code


def test_valid_token_names_tenant_from_the_key_not_the_claims(device):
    priv, kid, v = device
    ident = v.verify(sign_device_jwt(priv, "meter-1"))
    assert (ident.tenant_id, ident.device_id, ident.key_id) == ("tenant-a", "meter-1", kid)


def test_replayed_token_is_refused(device):
    priv, _, v = device
    tok = sign_device_jwt(priv, "meter-1")
    v.verify(tok)
    assert _code(v, tok) == "token_replayed"


@pytest.mark.parametrize("kwargs,code", [
    ({"now": int(time.time()) - 3600, "ttl_s": 300}, "token_expired"),
    ({"now": int(time.time()) + 600}, "token_not_yet_valid"),
    ({"audience": "fleetstream-api"}, "wrong_audience"),
    ({"ttl_s": 7200}, "lifetime_too_long"),
])
def test_bad_times_and_audiences_are_refused(device, kwargs, code):
    priv, _, v = device
    assert _code(v, sign_device_jwt(priv, "meter-1", **kwargs)) == code


def test_unknown_key_and_foreign_subject_are_refused(device):
    priv, _, v = device
    other_priv, _ = _key()
    assert _code(v, sign_device_jwt(other_priv, "meter-1")) == "unknown_key"
    assert _code(v, sign_device_jwt(priv, "meter-2")) == "subject_mismatch"


def test_forged_signature_with_a_registered_kid_is_refused(device):
    priv, kid, v = device
    other_priv, _ = _key()
    now = int(time.time())
    claims = {"iss": "meter-1", "sub": "meter-1", "aud": "fleetstream-ingest", "iat": now, "nbf": now,
              "exp": now + 60, "jti": "x"}
    forged = jwt.encode(claims, serialization.load_pem_private_key(other_priv.encode(), None), algorithm="ES256",
                        headers={"kid": kid})
    assert _code(v, forged) == "invalid_signature"


def test_inactive_device_and_garbage_are_refused():
    priv, pub = _key()
    kid = key_id(pub)
    v = DeviceJwtVerifier({kid: DeviceKey(kid, "t", "d", pub, active=False)}.get)
    assert _code(v, sign_device_jwt(priv, "d")) == "device_inactive"
    assert _code(v, "garbage") == "malformed_token"


def test_replay_cache_is_bounded_and_forgets_expired_entries():
    cache = ReplayCache(max_entries=3)
    now = 1000.0
    for i in range(5):
        assert cache.check_and_add(f"j{i}", now + 60, now)
    assert len(cache._seen) <= 3
    assert not cache.check_and_add("j4", now + 60, now)  # still remembered
    assert cache.check_and_add("j4", now + 60, now + 1000)  # long expired: forgotten, accepted as new
