"""Short-lived per-device download links: ``/v1/firmware/download/<token>``.

The token is ``base64url(claims).base64url(HMAC-SHA256(claims))`` with claims tenant, device, sha256 and
expiry. It is a capability: whoever holds it may fetch that one blob until it expires, so it is issued
per device and per job, with a short lifetime, and never logged by the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from gateway.identity.secrets import KeyStore

KEY_NAME = "ota/download-link-key"


class LinkError(ValueError):
    pass


@dataclass(frozen=True)
class LinkClaims:
    tenant_id: str
    device_id: str
    sha256: str
    expires_at: int


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class DownloadLinks:
    """:param keystore: holds the HMAC key (created on first use)."""

    def __init__(self, keystore: KeyStore):
        key = keystore.get(KEY_NAME)
        if key is None:
            keystore.put(KEY_NAME, secrets.token_bytes(32))
            key = keystore.get(KEY_NAME)
        self._key = key

    def issue(self, *, tenant_id: str, device_id: str, sha256: str, ttl_s: int) -> str:
        claims = {"t": tenant_id, "d": device_id, "h": sha256, "e": int(time.time()) + ttl_s}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return body + "." + _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def verify(self, token: str) -> LinkClaims:
        body, _, sig = token.partition(".")
        try:
            good = hmac.compare_digest(_unb64(sig), hmac.new(self._key, body.encode(), hashlib.sha256).digest())
            claims = json.loads(_unb64(body)) if good else None
        except ValueError as exc:
            raise LinkError("malformed download link") from exc
        if not claims:
            raise LinkError("download link signature does not verify")
        if claims["e"] < time.time():
            raise LinkError("download link expired")
        return LinkClaims(claims["t"], claims["d"], claims["h"], claims["e"])
