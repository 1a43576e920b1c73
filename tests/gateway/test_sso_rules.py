"""Pure rules of single sign-on (adr/0165): which issuers may be configured, claim → role, and which of the
provider's keys checks an ID token."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.oidc import issuer_allowed, role_for, signing_key

CFG = {"role_claim": "groups", "role_map": {"ops": "operator", "admins": "admin", "readers": "viewer"},
       "default_role": None}


@pytest.mark.parametrize("issuer, ok", [
    ("https://login.example.com/realms/acme", True), ("http://127.0.0.1:9400", True), ("http://localhost:8080", True),
    ("http://[::1]:9400", True), ("http://login.example.com", False), ("http://10.0.0.5", False),
    ("ftp://127.0.0.1", False), ("https://", False)])
def test_issuers_are_https_or_this_machine(issuer, ok):
    assert issuer_allowed(issuer) is ok


def test_the_highest_mapped_role_wins_and_unmapped_people_get_the_default():
    assert role_for(CFG, {"groups": ["readers", "ops"]}) == "operator"
    assert role_for(CFG, {"groups": ["admins", "ops", "x"]}) == "admin"
    assert role_for(CFG, {"groups": "ops"}) == "operator"  # a single string value
    assert role_for(CFG, {"groups": ["x"]}) is None
    assert role_for(CFG, {}) is None
    assert role_for({**CFG, "default_role": "viewer"}, {"groups": ["x"]}) == "viewer"
    assert role_for(CFG, {"groups": [{"nested": "ops"}, 5]}) is None  # odd values are ignored, not errors


class Jwks:
    """The two lookups of PyJWT's JWKS client that signing_key uses, over a fixed key set (no HTTP)."""

    def __init__(self, *keys, kids=()):
        jwks = []
        for i, k in enumerate(keys):
            d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key()))
            if i < len(kids):
                d["kid"] = kids[i]
            jwks.append(d)
        self.set = jwt.PyJWKSet.from_dict({"keys": jwks})

    def get_jwk_set(self):
        return self.set

    def get_signing_key(self, kid):
        return next(k for k in self.set.keys if k.key_id == kid)


def _rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_an_id_token_without_kid_is_checked_with_the_providers_only_key():
    # oidc-provider-mock (and OIDC Core 10.1 for a single key) leaves kid out: PyJWT's lookup alone fails
    key = _rsa()
    token = jwt.encode({"sub": "a"}, key, algorithm="RS256")
    found = signing_key(Jwks(key), token)
    assert jwt.decode(token, found, algorithms=["RS256"])["sub"] == "a"
    with pytest.raises(jwt.InvalidSignatureError):  # the only key, but not the one that signed
        jwt.decode(token, signing_key(Jwks(_rsa()), token), algorithms=["RS256"])
    with pytest.raises(jwt.PyJWTError, match="2 signing keys"):  # which one? refused, not guessed
        signing_key(Jwks(key, _rsa()), token)


def test_an_id_token_with_kid_is_checked_with_that_key():
    a, b = _rsa(), _rsa()
    token = jwt.encode({"sub": "b"}, b, algorithm="RS256", headers={"kid": "k2"})
    found = signing_key(Jwks(a, b, kids=("k1", "k2")), token)
    assert jwt.decode(token, found, algorithms=["RS256"])["sub"] == "b"
