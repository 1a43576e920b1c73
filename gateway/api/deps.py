"""Route dependencies. The tenant comes only from the verified token, never from path, query or body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth.tokens import Principal, TokenError
from gateway.errors import ApiError

bearer = HTTPBearer(auto_error=False)


def get_principal(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    if creds is None:
        raise ApiError(401, "unauthenticated", "a Bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        return request.app.state.keys.verify(creds.credentials)
    except TokenError as exc:
        raise ApiError(401, "invalid_token", f"token rejected: {exc}", {"WWW-Authenticate": "Bearer"}) from exc


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: str):
    def check(principal: PrincipalDep) -> Principal:
        if scope not in principal.scopes:
            raise ApiError(403, "insufficient_scope", f"this route needs the {scope} scope")
        return principal

    return check
