"""OpenID Connect single sign-on, per tenant (adr/0165): authorization-code flow with PKCE (S256), state and
nonce, the ID token verified against the provider's JWKS (issuer, audience = our client id, nonce), and a
claim mapped to a role.

The flow's secrets (state, nonce, PKCE verifier) travel in a short-lived HttpOnly cookie, signed with the
gateway's token key under an audience of its own — never acceptable as an API token — and SameSite=Lax,
because the provider sends the browser back with a cross-site top-level GET."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import time
from urllib.parse import urlencode, urlsplit

import httpx
import jwt

from .tokens import KeyRing

STATE_AUDIENCE = "fleetstream-sso-state"
STATE_COOKIE = "fs_sso"
STATE_TTL_S = 600
ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
_discovery: dict[str, tuple[float, dict]] = {}
_jwks: dict[str, jwt.PyJWKClient] = {}


class SsoError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def issuer_allowed(issuer: str) -> bool:
    """https, or http to this machine only (a provider in a test or on a developer's laptop)."""
    u = urlsplit(issuer)
    if u.scheme == "https" and u.hostname:
        return True
    if u.scheme != "http" or not u.hostname:
        return False
    if u.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(u.hostname).is_loopback
    except ValueError:
        return False


def discover(issuer: str) -> dict:
    hit = _discovery.get(issuer)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    r = httpx.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10, follow_redirects=False)
    r.raise_for_status()
    doc = r.json()
    if doc.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise SsoError("issuer_mismatch", f"the provider calls itself {doc.get('issuer')!r}, not {issuer!r}")
    _discovery[issuer] = (time.monotonic() + 300, doc)
    return doc


def start(keys: KeyRing, config: dict, tenant_id: str, redirect_uri: str) -> tuple[str, str]:
    """(the provider's authorization URL, the signed flow cookie)."""
    doc = discover(config["issuer"])
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": config["client_id"], "redirect_uri": redirect_uri,
                       "scope": "openid email profile", "state": state, "nonce": nonce,
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    now = int(time.time())
    kid = keys.current_kid
    cookie = jwt.encode({"aud": STATE_AUDIENCE, "iat": now, "exp": now + STATE_TTL_S, "tenant_id": tenant_id,
                         "state": state, "nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri},
                        keys.keys[kid], algorithm="ES256", headers={"kid": kid})
    return f"{doc['authorization_endpoint']}?{query}", cookie


def read_flow(keys: KeyRing, cookie: str | None, state: str | None) -> dict:
    if not cookie or not state:
        raise SsoError("no_flow", "no sign-in in progress in this browser (or it took longer than 10 minutes)")
    try:
        kid = jwt.get_unverified_header(cookie).get("kid")
        key = keys.keys.get(kid)
        if key is None:
            raise SsoError("no_flow", "the sign-in was started with an unknown key")
        flow = jwt.decode(cookie, key.public_key(), algorithms=["ES256"], audience=STATE_AUDIENCE)
    except jwt.PyJWTError as exc:
        raise SsoError("no_flow", f"the sign-in state is not valid: {exc}") from exc
    if not secrets.compare_digest(flow["state"], state):
        raise SsoError("state_mismatch", "the answer does not belong to the sign-in this browser started")
    return flow


def finish(config: dict, flow: dict, code: str) -> dict:
    """Exchanges the code (with the PKCE verifier) and returns the verified ID token's claims."""
    doc = discover(config["issuer"])
    r = httpx.post(doc["token_endpoint"], timeout=10, auth=(config["client_id"], config["client_secret"]),
                   data={"grant_type": "authorization_code", "code": code, "redirect_uri": flow["redirect_uri"],
                         "code_verifier": flow["verifier"]})
    if r.status_code != 200:
        raise SsoError("token_refused", f"the provider refused the code: {r.status_code} {r.text[:200]}")
    id_token = r.json().get("id_token")
    if not id_token:
        raise SsoError("no_id_token", "the provider returned no ID token")
    jwks = _jwks.setdefault(doc["jwks_uri"], jwt.PyJWKClient(doc["jwks_uri"], cache_keys=True))
    try:
        key = signing_key(jwks, id_token)
        claims = jwt.decode(id_token, key, algorithms=["RS256", "ES256", "PS256", "EdDSA"],
                            audience=config["client_id"], issuer=doc["issuer"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError as exc:
        raise SsoError("id_token_invalid", f"the ID token is not valid: {exc}") from exc
    if not secrets.compare_digest(str(claims.get("nonce", "")), flow["nonce"]):
        raise SsoError("nonce_mismatch", "the ID token was not issued for this sign-in")
    return claims


def signing_key(jwks: jwt.PyJWKClient, id_token: str):
    """The provider's key for ``id_token``: the one its ``kid`` names, or — when the header has no ``kid``,
    which OpenID Connect Core 10.1 allows for a provider with a single key — that provider's only signing
    key. (PyJWT's own lookup needs a ``kid`` on both sides; oidc-provider-mock, like some small providers,
    sends none, and every sign-in then failed as ``id_token_invalid``.)"""
    kid = jwt.get_unverified_header(id_token).get("kid")
    if kid is not None:
        return jwks.get_signing_key(kid).key
    keys = [k for k in jwks.get_jwk_set().keys if k.public_key_use in ("sig", None)]
    if len(keys) != 1:
        raise jwt.PyJWTError(f"the ID token names no key (kid) and the provider has {len(keys)} signing keys")
    return keys[0].key


def role_for(config: dict, claims: dict) -> str | None:
    """The highest role any value of the configured claim maps to; else the default role (None: refused)."""
    value = claims.get(config["role_claim"])
    values = value if isinstance(value, list) else [value] if value is not None else []
    mapped = [config["role_map"][v] for v in values if isinstance(v, str) and v in config["role_map"]]
    if mapped:
        return max(mapped, key=ROLE_RANK.__getitem__)
    return config.get("default_role")
