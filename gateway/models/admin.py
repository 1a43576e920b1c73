"""Tenants (platform administration) and a tenant's API clients."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.auth.tokens import ALL_SCOPES
from schemas.strict import Text

Scope = Literal[ALL_SCOPES]  # type: ignore[valid-type]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "acme-water"}]})
    name: Text = Field(min_length=1, max_length=100)


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "suspended"}]})
    name: Text | None = Field(None, min_length=1, max_length=100)
    status: Literal["active", "suspended"] | None = None


class TenantPublic(BaseModel):
    tenant_id: str
    name: str
    status: str
    created_at: dt.datetime

    @classmethod
    def of(cls, row: dict) -> TenantPublic:
        return cls(tenant_id=str(row["id"]), name=row["name"], status=row["status"], created_at=row["created_at"])


class TenantCreated(TenantPublic):
    client_id: str
    client_secret: str = Field(description="the tenant's first API client secret; shown once")
    scopes: list[str]


class TenantList(BaseModel):
    data: list[TenantPublic]
    count: int
    next_cursor: str | None = None


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "dashboard", "scopes": ["devices:read", "telemetry:read"]}]})
    name: Text = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1)


class ClientPublic(BaseModel):
    client_id: str
    name: str
    scopes: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: dict) -> ClientPublic:
        return cls(**{k: row[k] for k in cls.model_fields})


class ClientCreated(ClientPublic):
    client_secret: str = Field(description="shown once; store it now")


class ClientList(BaseModel):
    data: list[ClientPublic]
    count: int


class AuditEntry(BaseModel):
    id: int
    actor: str
    action: str
    target: str
    details: dict
    at: dt.datetime


class AuditList(BaseModel):
    data: list[AuditEntry]
    count: int
