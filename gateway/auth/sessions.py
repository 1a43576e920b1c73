"""Console sessions (adr/0161): the session is an ordinary short-lived tenant token (``sub`` = ``user:<id>``,
the role's scopes) carried in an HttpOnly, SameSite=Strict cookie, so page scripts never hold it and other
sites' pages never send it. The token also carries a random CSRF value; the console reads its twin from a
second, script-readable cookie and echoes it in ``X-CSRF-Token`` on unsafe requests (signed double submit:
an attacker can neither read the cookie nor mint a token whose claim matches a value they chose).

The /v1 API accepts the cookie exactly where it accepts ``Authorization: Bearer`` (gateway/api/deps.py):
same verification, same revocation (a disabled user is refused at once, adr/0107), same scope checks."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import HTTPConnection
from starlette.responses import Response

from .roles import scopes_of
from .tokens import KeyRing, Principal

SESSION_COOKIE = "fs_session"
CSRF_COOKIE = "fs_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def issue(keys: KeyRing, user: dict, ttl_s: int) -> tuple[str, str]:
    """(token, csrf) for this user row."""
    csrf = secrets.token_urlsafe(24)
    token = keys.issue(tenant_id=str(user["tenant_id"]), client_id=f"user:{user['id']}", scopes=scopes_of(user["role"]),
                       ttl_s=ttl_s, extra={"csrf": csrf, "role": user["role"], "email": user["email"]})
    return token, csrf


def is_https(conn: HTTPConnection) -> bool:
    """Served over https (directly, or behind a proxy that says so): cookies then get ``Secure``."""
    return conn.url.scheme in ("https", "wss") or conn.headers.get("x-forwarded-proto", "").lower() == "https"


def set_cookies(response: Response, conn: HTTPConnection, token: str, csrf: str, ttl_s: int) -> None:
    secure = is_https(conn)
    response.set_cookie(SESSION_COOKIE, token, max_age=ttl_s, path="/", httponly=True, samesite="strict",
                        secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf, max_age=ttl_s, path="/", httponly=False, samesite="strict",
                        secure=secure)


def clear_cookies(response: Response, conn: HTTPConnection) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict", secure=is_https(conn),
                               httponly=name == SESSION_COOKIE)


def csrf_ok(principal: Principal, header: str | None) -> bool:
    return bool(principal.csrf and header and hmac.compare_digest(principal.csrf.encode(), header.encode()))
