"""Single sign-on per tenant (adr/0165): `PUT/GET/DELETE /v1/sso` configure the tenant's OpenID provider
(users:write), `GET /v1/sso/{tenant}/login` starts the authorization-code flow, `GET /v1/sso/callback`
finishes it with a console session (adr/0161) and sends the browser to the console."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from psycopg.types.json import Jsonb

from gateway.api.deps import AuditRead, DbDep, KeysDep, SettingsDep, UsersWrite
from gateway.auth import oidc, sessions
from gateway.crud import audit
from gateway.crud import users as users_crud
from gateway.errors import ERROR_RESPONSES, ApiError, found
from gateway.models.users import SsoConfig, SsoOut

router = APIRouter(prefix="/sso", tags=["sso"], responses=ERROR_RESPONSES)
CONSOLE = "/console/"


@router.put("", response_model=SsoOut, summary="Configure this tenant's OpenID Connect single sign-on")
async def put_config(body: SsoConfig, principal: UsersWrite, db: DbDep) -> SsoOut:
    if not oidc.issuer_allowed(body.issuer):
        raise ApiError(422, "issuer_not_https", "the issuer must be https (http only for this machine)")

    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            row = conn.execute(
                "insert into tenant_sso (tenant_id, issuer, client_id, client_secret, role_claim, role_map, default_role) "
                "values (%s, %s, %s, %s, %s, %s, %s) on conflict (tenant_id) do update set issuer = excluded.issuer, "
                "client_id = excluded.client_id, client_secret = excluded.client_secret, role_claim = excluded.role_claim, "
                "role_map = excluded.role_map, default_role = excluded.default_role, updated_at = now() returning *",
                (principal.tenant_id, body.issuer, body.client_id, body.client_secret, body.role_claim,
                 Jsonb(body.role_map), body.default_role)).fetchone()
            audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="sso.configure",
                         target="sso", details={"issuer": body.issuer, "client_id": body.client_id,
                                                "role_claim": body.role_claim, "role_map": body.role_map,
                                                "default_role": body.default_role})
            return row

    return SsoOut(**{k: v for k, v in (await run_in_threadpool(run)).items() if k in SsoOut.model_fields})


@router.get("", response_model=SsoOut, summary="This tenant's single sign-on settings (never the secret)")
async def get_config(principal: AuditRead, db: DbDep) -> SsoOut:
    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            return conn.execute("select * from tenant_sso").fetchone()

    row = found(await run_in_threadpool(run), "single sign-on settings")
    return SsoOut(**{k: v for k, v in row.items() if k in SsoOut.model_fields})


@router.delete("", status_code=204, summary="Turn single sign-on off for this tenant")
async def delete_config(principal: UsersWrite, db: DbDep) -> Response:
    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            conn.execute("delete from tenant_sso")
            audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="sso.remove", target="sso")

    await run_in_threadpool(run)
    return Response(status_code=204)


def _callback_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/v1/sso/callback"


def _fail(code: str, status: int = 303) -> RedirectResponse:
    resp = RedirectResponse(f"{CONSOLE}?sso_error={quote(code)}", status_code=status)
    resp.delete_cookie(oidc.STATE_COOKIE, path="/v1/sso")
    return resp


@router.get("/{tenant}/login", summary="Start single sign-on (a browser redirect to the tenant's provider)",
            response_class=RedirectResponse, status_code=302,
            responses={302: {"description": "to the provider, or back to the console with ?sso_error="}})
async def login(tenant: str, request: Request, db: DbDep, keys: KeysDep):
    def run():
        with db.anonymous_tx() as conn:
            t = users_crud.tenant_for_login(conn, tenant)
        if t is None or t["status"] != "active":
            return None, None
        with db.tenant_tx(str(t["id"])) as conn:
            return str(t["id"]), conn.execute("select * from tenant_sso").fetchone()

    tenant_id, config = await run_in_threadpool(run)
    if config is None:
        return _fail("sso_not_configured", 302)
    try:
        url, cookie = await run_in_threadpool(oidc.start, keys, config, tenant_id, _callback_url(request))
    except Exception:
        return _fail("provider_unreachable", 302)
    resp = RedirectResponse(url, status_code=302)
    resp.set_cookie(oidc.STATE_COOKIE, cookie, max_age=oidc.STATE_TTL_S, path="/v1/sso", httponly=True,
                    samesite="lax", secure=sessions.is_https(request))
    return resp


@router.get("/callback", summary="Where the provider sends the browser back", response_class=RedirectResponse,
            status_code=303, responses={303: {"description": "to the console, signed in or with ?sso_error="}})
async def callback(request: Request, db: DbDep, keys: KeysDep, s: SettingsDep, code: str | None = None,
                   state: str | None = None, error: str | None = None):
    if error:
        return _fail(f"provider: {error[:60]}")
    try:
        flow = oidc.read_flow(keys, request.cookies.get(oidc.STATE_COOKIE), state)
    except oidc.SsoError as exc:
        return _fail(exc.code)
    tenant_id = flow["tenant_id"]

    def config():
        with db.tenant_tx(tenant_id) as conn:
            return conn.execute("select * from tenant_sso").fetchone()

    cfg = await run_in_threadpool(config)
    if cfg is None or not code:
        return _fail("sso_not_configured")
    try:
        claims = await run_in_threadpool(oidc.finish, cfg, flow, code)
    except oidc.SsoError as exc:
        return _fail(exc.code)
    except Exception:
        return _fail("provider_unreachable")

    def sign_in():
        with db.tenant_tx(tenant_id) as conn:
            role = oidc.role_for(cfg, claims)
            user = users_crud.by_oidc_subject(conn, claims["sub"])
            email = str(claims.get("email") or "").lower()
            if user is None and email:
                user = users_crud.for_login(conn, email)
                if user is not None and user["oidc_subject"] is not None:
                    return None, "subject_mismatch"  # that address is bound to another subject already
            if user is None:
                if role is None:
                    return None, "no_role"
                if not email:
                    return None, "no_email"
                user = users_crud.create(conn, tenant_id=tenant_id, email=email, role=role,
                                         name=str(claims.get("name") or ""), oidc_subject=claims["sub"])
                audit.record(conn, tenant_id=tenant_id, actor=f"user:{user['id']}", action="user.create",
                             target=f"user:{user['id']}", details={"email": email, "role": role, "via": "sso"})
                user = users_crud.for_login(conn, email)
            if user["disabled_at"] is not None:
                return None, "disabled"
            changes = {"oidc_subject": claims["sub"]}
            if user["role"] != "owner":  # the provider's groups decide, but never make or unmake an owner
                if role is None:
                    return None, "no_role"
                changes["role"] = role
            users_crud.update(conn, str(user["id"]), **changes)
            users_crud.login_succeeded(conn, str(user["id"]))
            audit.record(conn, tenant_id=tenant_id, actor=f"user:{user['id']}", action="session.login",
                         target=f"user:{user['id']}", details={"method": "sso", "issuer": cfg["issuer"],
                                                               "role": changes.get("role", user["role"])})
            return users_crud.for_login(conn, user["email"]), None

    user, problem = await run_in_threadpool(sign_in)
    if problem:
        return _fail(problem)
    token, csrf = sessions.issue(keys, user, s.token_ttl_s)
    resp = RedirectResponse(CONSOLE, status_code=303)
    sessions.set_cookies(resp, request, token, csrf, s.token_ttl_s)
    resp.delete_cookie(oidc.STATE_COOKIE, path="/v1/sso")
    return resp
