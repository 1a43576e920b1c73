"""Platform administration: tenants and the token signing keys. Platform tokens only (never tenant
data: the platform transaction sees the tenants table and nothing else)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from gateway.api.deps import AdminDep, KeysDep, PlatformAdmin, require_platform_admin
from gateway.crud import tenants as tenants_crud
from gateway.errors import ERROR_RESPONSES, not_found
from gateway.models.admin import TenantCreate, TenantCreated, TenantList, TenantPublic, TenantUpdate

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES,
                   dependencies=[Depends(require_platform_admin)])


@router.post("/tenants", status_code=status.HTTP_201_CREATED, response_model=TenantCreated,
             summary="Create a tenant, its CA and its first API client (secret shown once)")
def create_tenant(body: TenantCreate, admin: AdminDep) -> TenantCreated:
    out = admin.create_tenant(body.name)
    with admin.platform_tx() as conn:
        row = tenants_crud.get_tenant(conn, tenant_id=out["tenant_id"])
    return TenantCreated(**TenantPublic.of(row).model_dump(), client_id=out["client_id"],
                         client_secret=out["client_secret"], scopes=out["scopes"])


@router.get("/tenants", response_model=TenantList, summary="All tenants")
def list_tenants(admin: AdminDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 cursor: uuid.UUID | None = None) -> TenantList:
    with admin.platform_tx() as conn:
        rows = tenants_crud.list_tenants(conn, limit=limit, after=str(cursor) if cursor else None)
    nxt = str(rows[-1]["id"]) if len(rows) == limit else None
    return TenantList(data=[TenantPublic.of(r) for r in rows], count=len(rows), next_cursor=nxt)


@router.get("/tenants/{tenant_id}", response_model=TenantPublic, summary="One tenant")
def get_tenant(tenant_id: uuid.UUID, admin: AdminDep) -> TenantPublic:
    with admin.platform_tx() as conn:
        row = tenants_crud.get_tenant(conn, tenant_id=str(tenant_id))
    if row is None:
        raise not_found(f"tenant {tenant_id}")
    return TenantPublic.of(row)


@router.patch("/tenants/{tenant_id}", response_model=TenantPublic,
              summary="Rename or suspend/reactivate a tenant (a suspended tenant's tokens are refused at once)")
def update_tenant(tenant_id: uuid.UUID, body: TenantUpdate, principal: PlatformAdmin,
                  admin: AdminDep) -> TenantPublic:
    row = admin.update_tenant(str(tenant_id), name=body.name, status=body.status,
                              actor=f"platform:{principal.client_id}")
    if row is None:
        raise not_found(f"tenant {tenant_id}")
    return TenantPublic.of(row)


@router.delete("/tenants/{tenant_id}", response_model=TenantPublic,
               summary="Delete a tenant: no more tokens; its data is kept per retention, never hard-deleted here")
def delete_tenant(tenant_id: uuid.UUID, principal: PlatformAdmin, admin: AdminDep) -> TenantPublic:
    row = admin.update_tenant(str(tenant_id), status="deleted", actor=f"platform:{principal.client_id}")
    if row is None:
        raise not_found(f"tenant {tenant_id}")
    return TenantPublic.of(row)


@router.post("/signing-keys/rotate", summary="Start signing tokens with a new key; old keys keep verifying")
def rotate_signing_key(keys: KeysDep) -> dict:
    kid = keys.rotate()
    return {"kid": kid, "jwks_url": "/v1/.well-known/jwks.json"}
