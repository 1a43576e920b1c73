"""Tokens and keys for control-plane tests: platform tokens, expired/forged/wrong-audience tokens, CSRs."""

from __future__ import annotations

import time
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.auth.tokens import ALL_SCOPES, AUDIENCE, ISSUER, PLATFORM_SCOPE, KeyRing


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def ring(settings) -> KeyRing:
    return KeyRing(settings.root / "keys" / "jwt")


def platform_token(settings) -> str:
    return ring(settings).issue(tenant_id="", client_id="test-platform", scopes=[PLATFORM_SCOPE], platform_admin=True)


def _claims(tenant_id: str, **over) -> dict:
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "test", "tenant_id": tenant_id, "scope": " ".join(ALL_SCOPES),
         "iat": now, "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    c.update(over)
    return c


def expired_token(settings, tenant_id: str) -> str:
    """Signed by the real key, every scope, but expired a minute ago."""
    r = ring(settings)
    now = int(time.time())
    return jwt.encode(_claims(tenant_id, iat=now - 900, nbf=now - 900, exp=now - 60), r.keys[r.current_kid],
                      algorithm="ES256", headers={"kid": r.current_kid})


def forged_token(settings, tenant_id: str) -> str:
    """Claims a real kid but is signed by a key the platform never had."""
    r = ring(settings)
    return jwt.encode(_claims(tenant_id), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                      headers={"kid": r.current_kid})


def wrong_audience_token(settings, tenant_id: str) -> str:
    r = ring(settings)
    return jwt.encode(_claims(tenant_id, aud="fleetstream-ingest"), r.keys[r.current_kid], algorithm="ES256",
                      headers={"kid": r.current_kid})


def new_key_pem() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key, pem


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_registration(key: ec.EllipticCurvePrivateKey, tenant_id: str, device_id: str) -> dict:
    """The body of ``POST /v1/devices/{device_id}/keys``: the public key and its proof of possession."""
    from runtime.device_jwt import sign_key_proof

    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    return {"public_key_pem": public_pem(key), "proof": sign_key_proof(priv, tenant_id, device_id)}


def make_csr(key: ec.EllipticCurvePrivateKey, cn: str = "whatever-the-device-claims") -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()
