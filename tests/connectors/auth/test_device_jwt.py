"""Device JWT verification, from an ingest endpoint's point of view: a device's own short-lived token is
accepted when the key it names belongs to the tenant (iss) and device (sub) it names; expired,
not-yet-valid, wrong-audience, unknown-key, over-long, foreign-subject, tenant-less (first contract) and
replayed tokens are refused with stable codes; a key proof binds a key to one tenant's device. Pure logic."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runtime.device_jwt import (
    DeviceJwtVerifier,
    DeviceKey,
    DeviceTokenError,
    ReplayCache,
    key_id,
    sign_device_jwt,
    sign_key_proof,
    verify_key_proof,
)

TENANT = str(uuid.uuid4())


def _key():
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()
    pub = k.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pub


def _lookup(*keys: DeviceKey):
    by = {(k.tenant_id, k.device_id, k.key_id): k for k in keys}
    return lambda tenant, device, kid: by.get((tenant, device, kid))


@pytest.fixture
def device():
    priv, pub = _key()
    kid = key_id(pub)
    return priv, kid, DeviceJwtVerifier(_lookup(DeviceKey(kid, TENANT, "meter-1", pub)))


def _code(verifier, token) -> str:
    with pytest.raises(DeviceTokenError) as e:
        verifier.verify(token)
    return e.value.code


def test_valid_token_names_the_tenant_and_device_whose_key_verified_it(device):
    priv, kid, v = device
    ident = v.verify(sign_device_jwt(priv, TENANT, "meter-1"))
    assert (ident.tenant_id, ident.device_id, ident.key_id) == (TENANT, "meter-1", kid)


def test_the_same_key_registered_by_another_tenant_never_moves_a_device_there():
    """The squatting attack (issue 19): tenant B registered A's public key for B's device of the same name.
    A's device names its own tenant (iss), so only A's key entry is consulted and the data stays A's."""
    priv, pub = _key()
    kid, other_tenant = key_id(pub), str(uuid.uuid4())
    v = DeviceJwtVerifier(_lookup(DeviceKey(kid, other_tenant, "meter-1", pub), DeviceKey(kid, TENANT, "meter-1", pub)))
    assert v.verify(sign_device_jwt(priv, TENANT, "meter-1")).tenant_id == TENANT
    only_b = DeviceJwtVerifier(_lookup(DeviceKey(kid, other_tenant, "meter-1", pub)))
    assert _code(only_b, sign_device_jwt(priv, TENANT, "meter-1")) == "unknown_key"


def test_a_first_contract_token_without_its_tenant_is_refused(device):
    priv, _, v = device
    legacy = jwt.encode({"iss": "meter-1", "sub": "meter-1", "aud": "fleetstream-ingest", "iat": int(time.time()),
                         "nbf": int(time.time()), "exp": int(time.time()) + 60, "jti": "l"},
                        serialization.load_pem_private_key(priv.encode(), None), algorithm="ES256",
                        headers={"kid": device[1]})
    assert _code(v, legacy) == "issuer_not_tenant"


def test_replayed_token_is_refused(device):
    priv, _, v = device
    tok = sign_device_jwt(priv, TENANT, "meter-1")
    v.verify(tok)
    assert _code(v, tok) == "token_replayed"


@pytest.mark.parametrize("kwargs,code", [
    ({"now": -3600, "ttl_s": 300}, "token_expired"),
    ({"now": 600}, "token_not_yet_valid"),
    ({"audience": "fleetstream-api"}, "wrong_audience"),
    ({"ttl_s": 7200}, "lifetime_too_long"),
])
def test_bad_times_and_audiences_are_refused(device, kwargs, code):
    priv, _, v = device
    if "now" in kwargs:  # relative to when the test runs, not to when it was collected (a long session)
        kwargs = {**kwargs, "now": int(time.time()) + kwargs["now"]}
    assert _code(v, sign_device_jwt(priv, TENANT, "meter-1", **kwargs)) == code


def test_unknown_key_and_foreign_subject_are_refused(device):
    priv, _, v = device
    other_priv, _ = _key()
    assert _code(v, sign_device_jwt(other_priv, TENANT, "meter-1")) == "unknown_key"
    assert _code(v, sign_device_jwt(priv, TENANT, "meter-2")) == "unknown_key"  # not meter-2's key
    assert _code(v, sign_device_jwt(priv, str(uuid.uuid4()), "meter-1")) == "unknown_key"  # nor another tenant's


def test_forged_signature_with_a_registered_kid_is_refused(device):
    priv, kid, v = device
    other_priv, _ = _key()
    now = int(time.time())
    claims = {"iss": TENANT, "sub": "meter-1", "aud": "fleetstream-ingest", "iat": now, "nbf": now,
              "exp": now + 60, "jti": "x"}
    forged = jwt.encode(claims, serialization.load_pem_private_key(other_priv.encode(), None), algorithm="ES256",
                        headers={"kid": kid})
    assert _code(v, forged) == "invalid_signature"


def test_inactive_device_and_garbage_are_refused():
    priv, pub = _key()
    kid = key_id(pub)
    v = DeviceJwtVerifier(_lookup(DeviceKey(kid, TENANT, "d", pub, active=False)))
    assert _code(v, sign_device_jwt(priv, TENANT, "d")) == "device_inactive"
    assert _code(v, "garbage") == "malformed_token"


def test_replay_cache_is_bounded_and_forgets_expired_entries():
    cache = ReplayCache(max_entries=3)
    now = 1000.0
    for i in range(5):
        assert cache.check_and_add(f"j{i}", now + 60, now)
    assert len(cache._seen) <= 3
    assert not cache.check_and_add("j4", now + 60, now)  # still remembered
    assert cache.check_and_add("j4", now + 60, now + 1000)  # long expired: forgotten, accepted as new


def test_a_key_proof_binds_the_key_to_one_tenants_device():
    priv, pub = _key()
    verify_key_proof(sign_key_proof(priv, TENANT, "meter-1"), pub, TENANT, "meter-1")

    def refused(proof, public=pub, tenant=TENANT, device="meter-1") -> str:
        with pytest.raises(DeviceTokenError) as e:
            verify_key_proof(proof, public, tenant, device)
        return e.value.code

    other_priv, other_pub = _key()
    assert refused(sign_key_proof(other_priv, TENANT, "meter-1")) == "invalid_proof"  # without the private key
    assert refused(sign_key_proof(priv, TENANT, "meter-1"), tenant=str(uuid.uuid4())) == "proof_mismatch"
    assert refused(sign_key_proof(priv, TENANT, "meter-1"), device="meter-2") == "proof_mismatch"
    assert refused(sign_device_jwt(priv, TENANT, "meter-1")) == "wrong_audience"  # an ingest token is no proof
    assert refused(sign_key_proof(priv, TENANT, "meter-1", now=int(time.time()) - 3600)) == "proof_expired"
    assert refused(sign_key_proof(priv, TENANT, "meter-1", ttl_s=3600)) == "lifetime_too_long"
    assert refused("garbage") == "invalid_proof"


def test_a_token_missing_parts_of_the_contract_is_told_every_missing_part_at_once(device):
    priv, _, v = device
    bare = jwt.encode({"iss": TENANT, "sub": "meter-1", "exp": int(time.time()) + 60},
                      serialization.load_pem_private_key(priv.encode(), None), algorithm="ES256")
    with pytest.raises(DeviceTokenError) as err:
        v.verify(bare)
    msg = str(err.value)
    assert err.value.code == "malformed_token"
    for part in ("header kid", "aud (", "iat (", "nbf (", "jti ("):
        assert part in msg, (part, msg)
    assert "exp (" not in msg and "sub (" not in msg and "docs/devices/device-jwt.md" in msg
