"""Device JWT parsing under arbitrary tokens: ``DeviceJwtVerifier.verify`` raises nothing but
``DeviceTokenError`` (the HTTP/CoAP edge turns it into 401/403), whether the token is noise or correctly
signed with a registered key around any header and claims; an accepted one names the key's own device."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from runtime.device_jwt import AUDIENCE, DeviceJwtVerifier, DeviceKey, DeviceTokenError, key_id

KEY = ec.generate_private_key(ec.SECP256R1())
PUB = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode()
KID = key_id(PUB)
NOW = int(time.time())


def _verifier() -> DeviceJwtVerifier:
    return DeviceJwtVerifier(lambda kid: DeviceKey(KID, "tenant-1", "dev-1", PUB) if kid == KID else None)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _signed(header: dict, claims_json: bytes) -> str:
    signing = _b64(json.dumps(header).encode()) + b"." + _b64(claims_json)
    return (signing + b"." + _b64(ECAlgorithm(ECAlgorithm.SHA256).sign(signing, KEY))).decode()


def _verify(token: str):
    try:
        ident = _verifier().verify(token)
    except DeviceTokenError as exc:
        assert exc.code and str(exc)
        return None
    assert (ident.tenant_id, ident.device_id, ident.key_id) == ("tenant-1", "dev-1", KID)
    return ident


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(),
              st.integers(min_value=-(10 ** 400), max_value=10 ** 400),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12)),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8)
claim_values = {
    "iss": st.one_of(st.just("dev-1"), json_values), "sub": st.one_of(st.just("dev-1"), json_values),
    "aud": st.one_of(st.just(AUDIENCE), st.just([AUDIENCE]), json_values),
    "iat": st.one_of(st.just(NOW), st.integers(NOW - 10 ** 6, NOW + 10 ** 6), json_values),
    "nbf": st.one_of(st.just(NOW), json_values), "exp": st.one_of(st.just(NOW + 60), json_values),
    "jti": st.one_of(st.uuids().map(str), json_values),
}
claims = st.fixed_dictionaries({}, optional=claim_values)
headers = st.fixed_dictionaries({"alg": st.one_of(st.just("ES256"), json_values),
                                 "kid": st.one_of(st.just(KID), json_values)},
                                optional={"typ": json_values, "crit": json_values, "jku": json_values})


@given(st.text(max_size=300))
def test_any_text_is_a_token_or_refused(token):
    _verify(token)


@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4))
def test_any_dotted_base64_is_a_token_or_refused(parts):
    _verify(b".".join(_b64(x) for x in parts).decode())


@given(headers, claims)
def test_any_header_and_claims_signed_with_the_registered_key_verify_or_are_refused(header, body):
    _verify(_signed(header, json.dumps(body).encode()))


@given(st.binary(max_size=200))
def test_a_signed_body_that_is_not_a_json_object_is_refused(body):
    assert _verify(_signed({"alg": "ES256", "kid": KID}, body)) is None
