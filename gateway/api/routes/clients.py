"""A tenant's own API clients (create: secret shown once; revoke) and its audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from gateway.api.deps import AuditRead, ClientsWrite, DbDep
from gateway.crud import audit
from gateway.crud import clients as clients_crud
from gateway.errors import ERROR_RESPONSES, found, not_found
from gateway.models.admin import AuditEntry, AuditList, ClientCreate, ClientCreated, ClientList, ClientPublic

router = APIRouter(tags=["clients"], responses=ERROR_RESPONSES)


@router.post("/clients", status_code=status.HTTP_201_CREATED, response_model=ClientCreated,
             summary="Create an API client (the secret is shown once)")
def create_client(body: ClientCreate, principal: ClientsWrite, db: DbDep) -> ClientCreated:
    with db.tenant_tx(principal.tenant_id) as conn:
        row, secret = clients_crud.create_client(conn, tenant_id=principal.tenant_id, name=body.name,
                                                 scopes=list(dict.fromkeys(body.scopes)))
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="client.create",
                     target=f"client:{row['client_id']}", details={"scopes": row["scopes"]})
    return ClientCreated(**ClientPublic.of(row).model_dump(), client_secret=secret)


@router.get("/clients", response_model=ClientList, summary="The tenant's API clients (never their secrets)")
def list_clients(principal: ClientsWrite, db: DbDep) -> ClientList:
    with db.tenant_tx(principal.tenant_id) as conn:
        rows = clients_crud.list_clients(conn, tenant_id=principal.tenant_id)
    return ClientList(data=[ClientPublic.of(r) for r in rows], count=len(rows))


@router.get("/clients/{client_id}", response_model=ClientPublic, summary="One API client")
def get_client(client_id: str, principal: ClientsWrite, db: DbDep) -> ClientPublic:
    with db.tenant_tx(principal.tenant_id) as conn:
        row = clients_crud.get_client(conn, tenant_id=principal.tenant_id, client_id=client_id)
    return ClientPublic.of(found(row, f"client {client_id!r}"))


@router.post("/clients/{client_id}/revoke", response_model=ClientPublic,
             summary="Revoke an API client: it gets no new tokens (issued ones expire within their TTL)")
def revoke_client(client_id: str, principal: ClientsWrite, db: DbDep) -> ClientPublic:
    with db.tenant_tx(principal.tenant_id) as conn:
        row = clients_crud.revoke_client(conn, tenant_id=principal.tenant_id, client_id=client_id)
        if row is None:
            raise not_found(f"client {client_id!r}")
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="client.revoke",
                     target=f"client:{client_id}")
    return ClientPublic.of(row)


@router.get("/audit", response_model=AuditList, summary="Who changed what, newest first")
def audit_log(principal: AuditRead, db: DbDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              before_id: int | None = None, target: str | None = None) -> AuditList:
    with db.tenant_tx(principal.tenant_id) as conn:
        rows = audit.list_entries(conn, tenant_id=principal.tenant_id, limit=limit, before_id=before_id,
                                  target=target)
    return AuditList(data=[AuditEntry(**{k: r[k] for k in AuditEntry.model_fields}) for r in rows], count=len(rows))
