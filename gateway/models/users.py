"""Users, sessions and single sign-on settings on the wire (adr/0160, 0161, 0165)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.auth.passwords import MIN_PASSWORD_LENGTH
from schemas.strict import check_text

Role = Literal["owner", "admin", "operator", "viewer"]
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$"), AfterValidator(check_text)]
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024), AfterValidator(check_text)]
Name = Annotated[str, Field(max_length=200), AfterValidator(check_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    email: Email
    role: Role
    name: Name = ""
    password: Password | None = Field(None, description="omitted: one is generated and returned once")
    sso_only: bool = Field(False, description="no password: the user signs in through the tenant's SSO only")


class UserUpdate(Strict):
    name: Name | None = None
    role: Role | None = None
    password: Password | None = None
    disabled: bool | None = Field(None, description="true: refused at once, sessions included")
    unlock: bool | None = Field(None, description="true: forget failed sign-ins and lift a lockout")


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    has_password: bool
    has_sso: bool
    locked: bool
    disabled: bool
    last_login_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: dict) -> UserOut:
        now = dt.datetime.now(dt.UTC)
        return cls(id=str(row["id"]), email=row["email"], name=row["name"], role=row["role"],
                   has_password=row["has_password"], has_sso=row["has_sso"],
                   locked=bool(row["locked_until"] and row["locked_until"] > now),
                   disabled=row["disabled_at"] is not None, last_login_at=row["last_login_at"],
                   created_at=row["created_at"])


class UserCreated(UserOut):
    password: str | None = Field(None, description="the generated password, shown once")


class UserList(BaseModel):
    data: list[UserOut]
    count: int


class LoginIn(Strict):
    tenant: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(check_text)]
    email: Email
    password: Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(check_text)]


class SessionOut(BaseModel):
    user_id: str | None
    tenant_id: str
    email: str | None = None
    role: str | None = None
    scopes: list[str]
    expires_in: int | None = None
    csrf_token: str | None = None


class SsoConfig(Strict):
    issuer: Annotated[str, Field(pattern=r"^https?://", max_length=500), AfterValidator(check_text)]
    client_id: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(check_text)]
    client_secret: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(check_text)]
    role_claim: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(check_text)] = "groups"
    role_map: dict[Annotated[str, Field(max_length=200)], Literal["admin", "operator", "viewer"]] = {}
    default_role: Literal["admin", "operator", "viewer"] | None = None


class SsoOut(BaseModel):
    issuer: str
    client_id: str
    role_claim: str
    role_map: dict[str, str]
    default_role: str | None
