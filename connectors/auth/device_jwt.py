"""Device-signed JWTs for HTTP and CoAP (adr/0032).

A device registers an ES256 public key with the control plane and signs short-lived tokens itself:
header ``{"alg": "ES256", "kid": key_id(public key)}``, claims ``iss`` = ``sub`` = device id,
``aud`` = ``fleetstream-ingest``, ``iat``, ``nbf``, ``exp`` and a unique ``jti``.

``DeviceJwtVerifier.verify`` finds the key by ``kid`` through a lookup the caller supplies (Postgres in
the gateway, the registry topic in the CoAP connector). Tenant and device come from that lookup, never
from the token: a token only proves possession of a registered key.

Replay protection is per process: the ``jti`` cache is in memory, bounded, and keeps each entry for the
longest lifetime a token may have. Several replicas behind a load balancer each keep their own cache,
so a replay to another replica inside the token's lifetime is not caught; keep lifetimes short.
"""

from __future__ import annotations

import base64
import hashlib
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
MAX_LIFETIME_S = 3600
LEEWAY_S = 30


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


KeyLookup = Callable[[str], DeviceKey | None]


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


def sign_device_jwt(private_key_pem: str | bytes, device_id: str, *, ttl_s: int = 300, now: int | None = None,
                    audience: str = AUDIENCE, jti: str | None = None) -> str:
    """What a device does (and tests and the simulator): sign a short-lived token with its own key."""
    key = serialization.load_pem_private_key(private_key_pem.encode() if isinstance(private_key_pem, str)
                                             else private_key_pem, None)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time()) if now is None else now
    claims = {"iss": device_id, "sub": device_id, "aud": audience, "iat": now, "nbf": now, "exp": now + ttl_s,
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": key_id(pub)})


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
    """:param lookup: ``key_id -> DeviceKey | None``.
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
        if not kid:
            raise DeviceTokenError("unknown_key", "the token header needs kid = key id of a registered key")
        dk = self.lookup(kid)
        if dk is None:
            raise DeviceTokenError("unknown_key", "no registered device key has this kid")
        if not dk.active:
            raise DeviceTokenError("device_inactive", "the device is suspended or decommissioned")
        now = self.clock()
        try:
            claims = jwt.decode(token, load_es256_public_key(dk.public_key_pem), algorithms=["ES256"],
                                audience=AUDIENCE, leeway=LEEWAY_S,
                                options={"require": ["exp", "iat", "nbf", "sub", "jti", "aud"]})
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
        if claims["sub"] != dk.device_id or claims.get("iss", dk.device_id) != dk.device_id:
            raise DeviceTokenError("subject_mismatch", "sub/iss must be the id of the device that owns the key")
        if int(claims["exp"]) - int(claims["iat"]) > self.max_lifetime_s:
            raise DeviceTokenError("lifetime_too_long", f"a device token may live at most {self.max_lifetime_s}s")
        if not self.replay.check_and_add(f"{kid}:{claims['jti']}", float(claims["exp"]), now):
            raise DeviceTokenError("token_replayed", "this token (jti) was already used")
        return DeviceIdentity(dk.tenant_id, dk.device_id, kid, str(claims["jti"]), int(claims["exp"]))
