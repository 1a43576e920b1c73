"""A tenant's human users and their roles (adr/0160). ``users:write`` (admins, owners, and API clients given
that scope) manages them; only an owner or an API client makes, changes or removes owners; the last active
owner cannot be demoted or disabled. Listing needs ``audit:read``: whoever reads the audit log may see who
its actors are. Users are disabled, never deleted: audit entries keep naming them."""

from __future__ import annotations

import datetime as dt

import psycopg
from fastapi import APIRouter, status
from fastapi.concurrency import run_in_threadpool

from gateway.api.deps import AuditRead, DbDep, UsersWrite
from gateway.auth.passwords import hash_password, new_secret
from gateway.auth.tokens import Principal
from gateway.crud import audit
from gateway.crud import users as users_crud
from gateway.errors import ERROR_RESPONSES, ApiError, documented, found
from gateway.models.users import UserCreate, UserCreated, UserList, UserOut, UserUpdate

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)


def _acting_role(conn, principal: Principal) -> str:
    """An API client with users:write acts for the tenant as a whole (it is how the first owner can be made
    through the API); a user acts with the role it has now, not the one its token was issued with."""
    if principal.user_id is None:
        return "owner"
    me = users_crud.get(conn, principal.user_id)
    return me["role"] if me and me["disabled_at"] is None else "viewer"


def _owners_only(acting: str, *roles: str | None) -> None:
    if "owner" in roles and acting != "owner":
        raise ApiError(403, "owner_required", "only an owner can make, change or remove owners")


@router.get("", response_model=UserList, summary="The tenant's users")
async def list_users(principal: AuditRead, db: DbDep) -> UserList:
    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            return users_crud.list_users(conn)

    rows = await run_in_threadpool(run)
    return UserList(data=[UserOut.of(r) for r in rows], count=len(rows))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserCreated,
             summary="Add a user with a role (a generated password is shown once)",
             responses=documented({409: "a user with this email exists in the tenant"}))
async def create_user(body: UserCreate, principal: UsersWrite, db: DbDep) -> UserCreated:
    generated = None if body.sso_only or body.password else new_secret()
    password = body.password or generated
    pw_hash = None if body.sso_only else await run_in_threadpool(hash_password, password)

    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            _owners_only(_acting_role(conn, principal), body.role)
            try:
                with conn.transaction():
                    row = users_crud.create(conn, tenant_id=principal.tenant_id, email=body.email, role=body.role,
                                            name=body.name, password_hash=pw_hash)
            except psycopg.errors.UniqueViolation as exc:
                raise ApiError(409, "user_exists", f"a user {body.email.lower()!r} exists in this tenant") from exc
            except psycopg.errors.CheckViolation as exc:  # e.g. an address whose lower case Postgres sees otherwise
                raise ApiError(422, "invalid_email", "this email address cannot be stored") from exc
            audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="user.create",
                         target=f"user:{row['id']}", details={"email": row["email"], "role": row["role"]})
            return row

    row = await run_in_threadpool(run)
    return UserCreated(**UserOut.of(row).model_dump(), password=generated)


@router.get("/{user_id}", response_model=UserOut, summary="One user")
async def get_user(user_id: str, principal: AuditRead, db: DbDep) -> UserOut:
    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            return users_crud.get(conn, _uuid(user_id))

    return UserOut.of(found(await run_in_threadpool(run), f"user {user_id!r}"))


@router.patch("/{user_id}", response_model=UserOut,
              summary="Change a user's role or name, set a password, disable/enable, lift a lockout",
              responses=documented({409: "this would leave the tenant without an active owner"}))
async def update_user(user_id: str, body: UserUpdate, principal: UsersWrite, db: DbDep) -> UserOut:
    pw_hash = await run_in_threadpool(hash_password, body.password) if body.password else None

    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            row = conn.execute("select * from users where id = %s for update", (_uuid(user_id),)).fetchone()
            if row is None:
                return None
            _owners_only(_acting_role(conn, principal), row["role"], body.role)
            changes: dict = {}
            if body.name is not None:
                changes["name"] = body.name
            if body.role is not None:
                changes["role"] = body.role
            if pw_hash:
                changes["password_hash"] = pw_hash
            if body.disabled is not None:
                changes["disabled_at"] = dt.datetime.now(dt.UTC) if body.disabled else None
            if body.unlock:
                changes.update(failed_logins=0, locked_until=None)
            loses_owner = row["role"] == "owner" and row["disabled_at"] is None and (
                (body.role is not None and body.role != "owner") or body.disabled)
            if loses_owner and users_crud.active_owners(conn) <= 1:
                raise ApiError(409, "last_owner", "the tenant's last active owner cannot be demoted or disabled")
            out = users_crud.update(conn, str(row["id"]), **changes)
            details = {k: (v if k in ("name", "role") else True) for k, v in changes.items()
                       if k not in ("failed_logins", "locked_until")}
            if body.disabled is not None:
                details["disabled"] = body.disabled
            if body.unlock:
                details["unlock"] = True
            details.pop("disabled_at", None)
            audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="user.update",
                         target=f"user:{row['id']}", details=details)
            return out

    return UserOut.of(found(await run_in_threadpool(run), f"user {user_id!r}"))


@router.delete("/{user_id}", response_model=UserOut, summary="Disable a user (kept for the audit log)",
               responses=documented({409: "this would leave the tenant without an active owner"}))
async def disable_user(user_id: str, principal: UsersWrite, db: DbDep) -> UserOut:
    return await update_user(user_id, UserUpdate(disabled=True), principal, db)


def _uuid(value: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ApiError(404, "not_found", f"user {value!r} not found") from exc
