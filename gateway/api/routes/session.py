"""Console sign-in (adr/0161): a tenant's user exchanges email and password for a session cookie holding an
ordinary short-lived token with the role's scopes; refresh re-reads the user, sign-out clears the cookies.

Wrong tenant, unknown email, wrong password, a disabled or a locked account all get the same 401 after
the same amount of work (one argon2 verification), so the answer tells an attacker nothing. Five wrong
passwords in a row lock the account for 15 minutes (``gateway/crud/users.py``); an admin can lift it. An
address with too many failed sign-ins is answered 429 before any password work (adr/0166)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import DbDep, KeysDep, PrincipalDep, SettingsDep, per_app
from gateway.auth import sessions
from gateway.auth.login_throttle import LoginThrottle
from gateway.auth.passwords import verify_password
from gateway.crud import audit
from gateway.crud import users as users_crud
from gateway.errors import ERROR_RESPONSES, ApiError, documented
from gateway.models.users import LoginIn, SessionOut

router = APIRouter(prefix="/session", tags=["session"], responses=ERROR_RESPONSES)

BAD_LOGIN = "unknown tenant or email, wrong password, or the account is disabled or locked"
THROTTLED = "too many failed sign-ins from this address; try again after Retry-After seconds"


def authenticate(db, tenant: str, email: str, password: str) -> dict | None:
    """The user row when the password is right and the account may sign in; None otherwise (and the
    failure counted)."""
    with db.anonymous_tx() as conn:
        t = users_crud.tenant_for_login(conn, tenant)
    if t is None or t["status"] != "active":
        verify_password(password, None)
        return None
    with db.tenant_tx(str(t["id"])) as conn:
        u = users_crud.for_login(conn, email)
        if u is None:
            verify_password(password, None)
            return None
        if u["disabled_at"] is not None or u["locked"]:
            verify_password(password, None)
            audit.record(conn, tenant_id=str(t["id"]), actor=f"user:{u['id']}", action="session.refused",
                         target=f"user:{u['id']}", details={"reason": "disabled" if u["disabled_at"] else "locked"})
            return None
        if not verify_password(password, u["password_hash"]):
            users_crud.login_failed(conn, str(u["id"]))
            audit.record(conn, tenant_id=str(t["id"]), actor=f"user:{u['id']}", action="session.login_failed",
                         target=f"user:{u['id']}", details={"failed_in_a_row": u["failed_logins"] + 1})
            return None
        users_crud.login_succeeded(conn, str(u["id"]))
        audit.record(conn, tenant_id=str(t["id"]), actor=f"user:{u['id']}", action="session.login",
                     target=f"user:{u['id']}", details={"method": "password"})
        return u


def session_response(request: Request, keys, user: dict, ttl_s: int, status_code: int = 200) -> JSONResponse:
    token, csrf = sessions.issue(keys, user, ttl_s)
    from gateway.auth.roles import scopes_of

    body = SessionOut(user_id=str(user["id"]), tenant_id=str(user["tenant_id"]), email=user["email"],
                      role=user["role"], scopes=scopes_of(user["role"]), expires_in=ttl_s, csrf_token=csrf)
    resp = JSONResponse(body.model_dump(), status_code=status_code)
    sessions.set_cookies(resp, request, token, csrf, ttl_s)
    return resp


@router.post("", response_model=SessionOut, summary="Sign in with email and password (sets the session cookies)",
             responses=documented({401: BAD_LOGIN, 429: THROTTLED}))
async def login(body: LoginIn, request: Request, db: DbDep, keys: KeysDep, s: SettingsDep):
    throttle = per_app(request, "login_throttle", LoginThrottle)
    address = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(address)
    if wait:
        raise ApiError(429, "too_many_attempts", THROTTLED, headers={"Retry-After": str(wait)})
    user = await run_in_threadpool(authenticate, db, body.tenant, body.email, body.password)
    if user is None:
        throttle.failed(address)
        raise ApiError(401, "invalid_credentials", BAD_LOGIN)
    return session_response(request, keys, user, s.token_ttl_s)


@router.get("", response_model=SessionOut, summary="Who is signed in (a session or any tenant token)")
async def whoami(principal: PrincipalDep, db: DbDep) -> SessionOut:
    if not principal.tenant_id:
        raise ApiError(403, "tenant_token_required", "a platform token has no tenant session")
    user = None
    if principal.user_id:
        def run():
            with db.tenant_tx(principal.tenant_id) as conn:
                return users_crud.get(conn, principal.user_id)

        user = await run_in_threadpool(run)
    return SessionOut(user_id=principal.user_id, tenant_id=principal.tenant_id, scopes=sorted(principal.scopes),
                      email=user["email"] if user else None, role=user["role"] if user else None)


@router.post("/refresh", response_model=SessionOut, summary="A fresh session token for the signed-in user",
             responses=documented({401: "no session, or the user was disabled"}))
async def refresh(principal: PrincipalDep, request: Request, db: DbDep, keys: KeysDep, s: SettingsDep):
    if principal.user_id is None:
        raise ApiError(403, "session_required", "only a user's session can be refreshed")

    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            return users_crud.get(conn, principal.user_id)

    user = await run_in_threadpool(run)
    if user is None or user["disabled_at"] is not None:
        raise ApiError(401, "invalid_token", "this user may no longer sign in")
    return session_response(request, keys, user, s.token_ttl_s)  # the role as it is now


@router.delete("", status_code=204, summary="Sign out (clears the session cookies)")
async def logout(request: Request):
    resp = Response(status_code=204)
    sessions.clear_cookies(resp, request)
    return resp
