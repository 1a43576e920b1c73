"""Tokens for long-lived connections: the same tenant tokens and scopes as REST.

Browsers cannot set headers on ``EventSource`` or ``WebSocket``, so besides ``Authorization: Bearer`` a
token may come as the ``access_token`` query parameter (SSE, WebSocket) or in the first WebSocket message.
The token is checked once, when the connection opens; a connection outliving its token keeps streaming
until it closes (the token's lifetime bounds how long a revoked client can *open* streams).
"""

from __future__ import annotations

from gateway.auth.tokens import Principal, TokenError
from gateway.errors import ApiError

SCOPE = "telemetry:read"


def principal_from_token(keys, token: str | None) -> Principal:
    if not token:
        raise ApiError(401, "unauthenticated", "a Bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        principal = keys.verify(token)
    except TokenError as exc:
        raise ApiError(401, "invalid_token", f"token rejected: {exc}", {"WWW-Authenticate": "Bearer"}) from exc
    if SCOPE not in principal.scopes or not principal.tenant_id:
        raise ApiError(403, "insufficient_scope", f"live streams need the {SCOPE} scope")
    return principal


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def same_origin(conn) -> bool:
    """The page that opened this connection is on this host (its Origin names the Host it connected to)."""
    from urllib.parse import urlsplit

    origin, host = conn.headers.get("origin"), conn.headers.get("host")
    return bool(origin and host and urlsplit(origin).netloc == host)
