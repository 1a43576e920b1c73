"""OAuth 2.0 client-credentials token endpoint (RFC 6749 §4.4) and the JWKS of the signing keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from gateway.api.deps import DbDep, KeysDep, SettingsDep
from gateway.auth.passwords import verify_secret
from gateway.crud.tenants import find_client
from gateway.errors import ApiError

router = APIRouter(tags=["oauth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


@router.post("/oauth/token", response_model=TokenResponse, summary="Exchange client credentials for a token")
async def token(db: DbDep, keys: KeysDep, s: SettingsDep, grant_type: Annotated[str, Form()],
                client_id: Annotated[str, Form()], client_secret: Annotated[str, Form()],
                scope: Annotated[str | None, Form()] = None) -> TokenResponse:
    if grant_type != "client_credentials":
        raise ApiError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")

    def lookup():
        with db.anonymous_tx() as conn:
            return find_client(conn, client_id)

    client = await run_in_threadpool(lookup)
    ok = client is not None and await run_in_threadpool(verify_secret, client_secret, client["secret_hash"])
    if not ok:
        raise ApiError(401, "invalid_client", "unknown client or wrong secret")
    if client["tenant_status"] != "active":
        raise ApiError(403, "tenant_suspended", "this tenant is suspended")
    granted = list(client["scopes"])
    if scope:
        asked = scope.split()
        missing = [s for s in asked if s not in granted]
        if missing:
            raise ApiError(400, "invalid_scope", f"client may not request: {' '.join(missing)}")
        granted = asked
    ttl = s.token_ttl_s
    tok = keys.issue(tenant_id=str(client["tenant_id"]), client_id=client_id, scopes=granted, ttl_s=ttl)
    return TokenResponse(access_token=tok, expires_in=ttl, scope=" ".join(granted))


@router.get("/.well-known/jwks.json", summary="Public keys that verify fleetstream tokens")
def jwks(keys: KeysDep) -> dict:
    return keys.jwks()
