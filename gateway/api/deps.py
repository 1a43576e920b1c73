"""Route dependencies. The tenant comes only from the verified token, never from path, query or body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth.revocation import TokenRevoked
from gateway.auth.tokens import PLATFORM_SCOPE, Principal, TokenError
from gateway.errors import ApiError

bearer = HTTPBearer(auto_error=False)


def get_principal(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    if creds is None:
        raise ApiError(401, "unauthenticated", "a Bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        return request.app.state.keys.verify(creds.credentials)
    except TokenRevoked as exc:  # a valid token whose tenant is suspended or client revoked (adr/0107)
        challenge = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise ApiError(exc.status, exc.code, str(exc), challenge) from exc
    except TokenError as exc:
        raise ApiError(401, "invalid_token", f"token rejected: {exc}", {"WWW-Authenticate": "Bearer"}) from exc


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: str):
    """A tenant route's guard: the token must carry ``scope`` (and therefore be a tenant token)."""

    def check(principal: PrincipalDep) -> Principal:
        if scope not in principal.scopes or not principal.tenant_id:
            raise ApiError(403, "insufficient_scope", f"this route needs the {scope} scope")
        return principal

    return check


def require_platform_admin(principal: PrincipalDep) -> Principal:
    """Tenant management: a platform token (``platform_admin`` claim and the platform scope) only."""
    if not principal.platform_admin or PLATFORM_SCOPE not in principal.scopes:
        raise ApiError(403, "platform_admin_required", "this route needs a platform administrator token")
    return principal


def tenant_principal(scope: str):
    """``Annotated`` alias for handlers: ``principal: tenant_principal("devices:read")``."""
    return Annotated[Principal, Depends(require(scope))]


DevicesRead = tenant_principal("devices:read")
DevicesWrite = tenant_principal("devices:write")
ClientsWrite = tenant_principal("clients:write")
AuditRead = tenant_principal("audit:read")
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]
