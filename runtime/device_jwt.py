"""Device-signed JWTs for HTTP and CoAP (adr/0032).

A device registers an ES256 public key with the control plane and signs short-lived tokens itself:
header ``{"alg": "ES256", "kid": key_id(public key)}``, claims ``iss`` = its tenant id, ``sub`` = its
device id, ``aud`` = ``fleetstream-ingest``, ``iat``, ``nbf``, ``exp`` and a unique ``jti`` (adr/0106).

``DeviceJwtVerifier.verify`` asks a lookup the caller supplies (Postgres in the gateway, the registry topic
in the CoAP connector) for the key ``kid`` *of the device ``sub`` of the tenant ``iss``*, and accepts the
token only if that key verifies it. A key registered by another tenant, or by another device, is never
consulted: keys are scoped to their tenant and device, so the same public key registered elsewhere (by
mistake or by a squatter) cannot move a device's data into another tenant.

Registering a key needs proof of possession: ``sign_key_proof`` is a JWT signed with the new private key
(``aud`` = ``fleetstream-key-registration``, ``iss`` tenant, ``sub`` device), so nobody can register a
public key whose private half they do not hold, and a proof made for one tenant's device is useless for any
other.

Replay protection is per process: the ``jti`` cache is in memory, bounded, and keeps each entry for the
longest lifetime a token may have. Several replicas behind a load balancer each keep their own cache,
so a replay to another replica inside the token's lifetime is not caught; keep lifetimes short.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

AUDIENCE = "fleetstream-ingest"
PROOF_AUDIENCE = "fleetstream-key-registration"
MAX_LIFETIME_S = 3600
MAX_PROOF_LIFETIME_S = 900
LEEWAY_S = 30
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class DeviceTokenError(Exception):
    """A refused device token; ``code`` is stable (``expired``, ``replayed``, ...), status is 401."""

    status = 401

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DeviceKey:
    key_id: str
    tenant_id: str
    device_id: str
    public_key_pem: str
    active: bool = True  # False when the device is suspended or decommissioned


@dataclass(frozen=True)
class DeviceIdentity:
    tenant_id: str
    device_id: str
    key_id: str
    jti: str
    expires_at: int


# (tenant_id, device_id, key_id) -> the active key of exactly that tenant's device, or None
KeyLookup = Callable[[str, str, str], DeviceKey | None]


def load_es256_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """Parses a PEM public key and insists on ECDSA P-256 (ES256)."""
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("ES256 needs an ECDSA P-256 public key")
    return key


def key_id(public_key_pem: str | bytes) -> str:
    """``base64url(sha256(SubjectPublicKeyInfo DER))``: the same key always has the same id."""
    der = load_es256_public_key(public_key_pem).public_bytes(serialization.Encoding.DER,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def sign_device_jwt(private_key_pem: str | bytes, tenant_id: str, device_id: str, *, ttl_s: int = 300,
                    now: int | None = None, audience: str = AUDIENCE, jti: str | None = None) -> str:
    """What a device does (and tests and the simulator): sign a short-lived token with its own key."""
    key = _private_key(private_key_pem)
    now = int(time.time()) if now is None else now
    claims = {"iss": tenant_id, "sub": device_id, "aud": audience, "iat": now, "nbf": now, "exp": now + ttl_s,
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": _kid_of(key)})


def sign_key_proof(private_key_pem: str | bytes, tenant_id: str, device_id: str, *, ttl_s: int = 300,
                   now: int | None = None) -> str:
    """Proof of possession for ``POST /v1/devices/{id}/keys``: the new key signs its own registration for
    exactly this tenant and device (like a CSR's self-signature)."""
    return sign_device_jwt(private_key_pem, tenant_id, device_id, ttl_s=ttl_s, now=now, audience=PROOF_AUDIENCE)


def verify_key_proof(proof: str, public_key_pem: str, tenant_id: str, device_id: str, *,
                     now: float | None = None) -> None:
    """Raises ``DeviceTokenError`` unless ``proof`` was signed by the private half of ``public_key_pem`` for
    this tenant's device, recently. The public key must already be a valid ES256 key."""
    pub = load_es256_public_key(public_key_pem)
    try:
        header = jwt.get_unverified_header(proof)
        claims = jwt.decode(proof, pub, algorithms=["ES256"], audience=PROOF_AUDIENCE, leeway=LEEWAY_S,
                            options={"require": ["exp", "iat", "iss", "sub", "aud"]})
    except jwt.ExpiredSignatureError as exc:
        raise DeviceTokenError("proof_expired", "the key proof has expired; sign a new one") from exc
    except jwt.InvalidAudienceError as exc:
        raise DeviceTokenError("wrong_audience", f"a key proof's audience must be {PROOF_AUDIENCE!r}") from exc
    except jwt.PyJWTError as exc:
        raise DeviceTokenError("invalid_proof", f"the proof is not signed by this key: {exc}") from exc
    if header.get("alg") != "ES256" or header.get("kid") != key_id(public_key_pem):
        raise DeviceTokenError("invalid_proof", "the proof's header needs alg ES256 and kid = this key's id")
    if claims["iss"] != tenant_id or claims["sub"] != device_id:
        raise DeviceTokenError("proof_mismatch", "the proof names another tenant or device (iss, sub)")
    if int(claims["exp"]) - int(claims["iat"]) > MAX_PROOF_LIFETIME_S:
        raise DeviceTokenError("lifetime_too_long", f"a key proof may live at most {MAX_PROOF_LIFETIME_S}s")
    if now is not None and int(claims["iat"]) > now + LEEWAY_S:
        raise DeviceTokenError("token_not_yet_valid", "the proof's iat is in the future")


def _private_key(pem: str | bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("ES256 needs an ECDSA P-256 private key")
    return key


def _kid_of(key: ec.EllipticCurvePrivateKey) -> str:
    return key_id(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))


class ReplayCache:
    """Remembers seen ``jti`` values until their tokens could no longer verify; bounded in size.

    When full, the oldest entries go first; a token evicted early could be replayed, so size the
    cache for (requests per second × max lifetime)."""

    def __init__(self, max_entries: int = 200_000):
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_add(self, jti: str, expires_at: float, now: float) -> bool:
        """True if the jti is new (and is now remembered), False if it was seen before."""
        with self._lock:
            while self._seen:  # entries are in insertion order; drop those past their expiry
                oldest_jti, oldest_exp = next(iter(self._seen.items()))
                if oldest_exp > now and len(self._seen) < self.max_entries:
                    break
                self._seen.popitem(last=False)
            if jti in self._seen and self._seen[jti] > now:
                return False
            self._seen[jti] = expires_at + LEEWAY_S
            return True


class DeviceJwtVerifier:
    """:param lookup: ``(tenant_id, device_id, key_id) -> DeviceKey | None``: only that device's key.
    :param max_lifetime_s: tokens whose ``exp - iat`` is longer are refused; also the replay window.
    :param replay_cache: shared cache, default a new one per verifier."""

    def __init__(self, lookup: KeyLookup, *, max_lifetime_s: int = MAX_LIFETIME_S,
                 replay_cache: ReplayCache | None = None, clock: Callable[[], float] = time.time):
        self.lookup = lookup
        self.max_lifetime_s = max_lifetime_s
        self.replay = replay_cache or ReplayCache()
        self.clock = clock

    def verify(self, token: str) -> DeviceIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise DeviceTokenError("malformed_token", f"not a JWT: {exc}") from exc
        if header.get("alg") != "ES256":
            raise DeviceTokenError("unsupported_algorithm", "device tokens must be signed with ES256")
        kid = header.get("kid")
        tenant_id, device_id = _claimed_identity(token, kid)
        dk = self.lookup(tenant_id, device_id, kid)
        if dk is None:
            raise DeviceTokenError("unknown_key", "this tenant's device has no registered key with this kid")
        if not dk.active:
            raise DeviceTokenError("device_inactive", "the device is suspended or decommissioned")
        now = self.clock()
        try:
            claims = jwt.decode(token, load_es256_public_key(dk.public_key_pem), algorithms=["ES256"],
                                audience=AUDIENCE, leeway=LEEWAY_S,
                                options={"require": ["exp", "iat", "nbf", "iss", "sub", "jti", "aud"]})
        except jwt.ExpiredSignatureError as exc:
            raise DeviceTokenError("token_expired", "the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise DeviceTokenError("token_not_yet_valid", "the token is not valid yet (nbf/iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise DeviceTokenError("wrong_audience", f"the token's audience must be {AUDIENCE!r}") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise DeviceTokenError("malformed_token", str(exc)) from exc
        except jwt.PyJWTError as exc:
            raise DeviceTokenError("invalid_signature", f"token rejected: {exc}") from exc
        # the lookup was asked for (iss, sub); a lookup answering for another device must not pass
        if claims["sub"] != dk.device_id or claims["iss"] != dk.tenant_id:
            raise DeviceTokenError("subject_mismatch", "iss/sub must be the tenant and device that own the key")
        if int(claims["exp"]) - int(claims["iat"]) > self.max_lifetime_s:
            raise DeviceTokenError("lifetime_too_long", f"a device token may live at most {self.max_lifetime_s}s")
        if not self.replay.check_and_add(f"{kid}:{claims['jti']}", float(claims["exp"]), now):
            raise DeviceTokenError("token_replayed", "this token (jti) was already used")
        return DeviceIdentity(dk.tenant_id, dk.device_id, kid, str(claims["jti"]), int(claims["exp"]))


REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "nbf", "exp", "jti")
_WHAT = {"iss": "the tenant id", "sub": "the device id", "aud": repr(AUDIENCE), "iat": "issued-at, epoch s",
         "nbf": "not-before, epoch s", "exp": "expiry, epoch s, at most 1 h after iat", "jti": "a unique id"}


def missing_parts(header: dict, claims: dict) -> list[str]:
    """Every part of the device-token contract the token lacks: ``header kid`` and each missing claim."""
    out = [] if isinstance(header.get("kid"), str) and header["kid"] else ["header kid (the registered key's id)"]
    return out + [f"{c} ({_WHAT[c]})" for c in REQUIRED_CLAIMS if claims.get(c) in (None, "")]


def _claimed_identity(token: str, kid: object) -> tuple[str, str]:
    """``(iss, sub)`` before the signature is checked: only used to choose which key to check it with. A
    token that lacks parts of the contract is refused naming all of them at once (issue 20)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise DeviceTokenError("malformed_token", f"not a JWT: {exc}") from exc
    missing = missing_parts({"kid": kid}, claims)
    if missing:
        raise DeviceTokenError("malformed_token", "the device token lacks " + "; ".join(missing)
                               + " (docs/devices/device-jwt.md)")
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise DeviceTokenError("malformed_token", "the token needs sub = the device id (a string)")
    if not isinstance(iss, str) or not _UUID.match(iss):
        # tokens of the first contract carried iss = device id: refused, because a key found without its
        # tenant is exactly what let another tenant's registration capture a device (adr/0106)
        raise DeviceTokenError("issuer_not_tenant", "iss must be the device's tenant id (a UUID)")
    return iss, sub
