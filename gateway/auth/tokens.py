"""Tenant access tokens: short-lived ES256 JWTs carrying tenant and scopes, verified against a key ring
whose public half is published as JWKS. Rotation adds a key and keeps old ones until their tokens expire."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "fleetstream"
AUDIENCE = "fleetstream-api"
ALL_SCOPES = ("devices:read", "devices:write", "telemetry:read", "commands:write", "rules:write", "ota:write",
              "clients:write", "audit:read", "kafka:credentials", "users:write")
PLATFORM_SCOPE = "platform:admin"


RELOAD_EVERY_S = 30
VERIFIED_MAX = 10_000  # tokens whose signature was checked, kept until they expire


class TokenError(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    client_id: str
    scopes: frozenset[str]
    platform_admin: bool = False
    # a console session's token (adr/0161): the CSRF value unsafe requests must echo in X-CSRF-Token
    csrf: str | None = None

    @property
    def user_id(self) -> str | None:
        """The user behind a session token (``sub`` = ``user:<id>``), None for API clients."""
        return self.client_id[5:] if self.client_id.startswith("user:") else None


class KeyRing:
    """ES256 signing keys in ``<dir>/<kid>.pem`` (0600); the newest signs, all verify.

    :param revocation: checked after every successful verification (``check(principal)`` raising a
        ``TokenError``): the gateway's ``AuthState``, which refuses suspended tenants' and revoked clients'
        tokens before they expire (adr/0107). None (tools, tests minting tokens): signature only."""

    def __init__(self, directory: Path, revocation=None):
        self.dir = directory
        self.revocation = revocation
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._loaded_at = 0.0
        # token -> (principal, exp): an ES256 check costs ~0.3 ms of CPU (several ms on a busy machine) and a
        # client sends the same token for its whole 15 minutes (adr/0188)
        self._verified: dict[str, tuple[Principal, int]] = {}
        self.reload()
        if not self.keys:
            self.rotate()

    def reload(self) -> None:
        """Picks up keys another process (a replica, the CLI) added to the shared directory."""
        self._loaded_at = time.monotonic()
        if self.dir.exists():
            for f in sorted(self.dir.glob("*.pem")):
                self.keys[f.stem] = serialization.load_pem_private_key(f.read_bytes(), None)  # type: ignore[assignment]

    def rotate(self) -> str:
        from runtime.pki import key_pem, write_private

        kid = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(self.dir / f"{kid}.pem", key_pem(key))
        self.keys[kid] = key
        return kid

    @property
    def current_kid(self) -> str:
        if time.monotonic() - self._loaded_at > RELOAD_EVERY_S:
            self.reload()
        return max(self.keys)  # kids start with their creation time: the newest key signs

    def issue(self, *, tenant_id: str, client_id: str, scopes: list[str], ttl_s: int = 900,
              platform_admin: bool = False, extra: dict | None = None) -> str:
        """A tenant token; with ``platform_admin`` a platform token (no tenant, tenant management only)."""
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": client_id, "tenant_id": tenant_id,
                  "scope": " ".join(scopes), "iat": now, "nbf": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}
        if platform_admin:
            claims["platform_admin"] = True
        for k, v in (extra or {}).items():
            claims.setdefault(k, v)  # never overrides the registered claims above
        kid = self.current_kid
        return jwt.encode(claims, self.keys[kid], algorithm="ES256", headers={"kid": kid})

    def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            principal = hit[0]
        else:
            principal = self._verify_signed(token)
        if self.revocation is not None:
            self.revocation.check(principal)
        return principal

    def verified_in_memory(self, token: str) -> Principal | None:
        """``verify`` when it needs neither a signature check nor I/O (a token verified before, not expired,
        revocation known in memory), so the event loop may call it; None: call ``verify`` on a thread."""
        hit = self._verified.get(token)
        if hit is None or hit[1] <= time.time():
            return None
        if self.revocation is not None and not self.revocation.check_in_memory(hit[0]):
            return None
        return hit[0]

    def _verify_signed(self, token: str) -> Principal:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.keys.get(kid)
            if key is None:
                self.reload()
                key = self.keys.get(kid)
            if key is None:
                raise TokenError("token signed by an unknown key")
            claims = jwt.decode(token, key.public_key(), algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "tenant_id"]})
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from exc
        principal = Principal(tenant_id=claims["tenant_id"], client_id=claims["sub"],
                              scopes=frozenset(claims.get("scope", "").split()),
                              platform_admin=claims.get("platform_admin") is True,
                              csrf=claims["csrf"] if isinstance(claims.get("csrf"), str) else None)
        # Keys are only ever added to a ring, and nbf/iat only become more valid with time, so a signature
        # checked once stays good until exp. Only valid tokens are kept; the dict is cleared when full.
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (principal, int(claims["exp"]))
        return principal

    def jwks(self) -> dict:
        out = []
        for kid, key in sorted(self.keys.items()):
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig", alg="ES256")
            out.append(jwk)
        return {"keys": out}
