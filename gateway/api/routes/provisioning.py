"""Fleet provisioning: a tenant issues claim tokens; a device presents one with its CSR over HTTPS and
gets its certificate chain. The claim token is the device's only credential here: no tenant token."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from gateway.api.deps import AdminDep, DbDep, DevicesRead, DevicesWrite, OutboxDep, PKIDep, SettingsDep
from gateway.crud import audit, device_types
from gateway.crud import claim_tokens as claims_crud
from gateway.errors import ERROR_RESPONSES, ApiError, ErrorResponse, documented, found, not_found
from gateway.identity.provisioning import provision_with_claim
from gateway.models.provisioning import (
    ClaimTokenCreate,
    ClaimTokenCreated,
    ClaimTokenList,
    ClaimTokenPublic,
    DeviceTypeCreate,
    DeviceTypeList,
    DeviceTypeMetrics,
    DeviceTypePublic,
    MetricDeclaration,
    ProvisionRequest,
    ProvisionResponse,
)
from gateway.registry_publisher import enqueue_device_type
from schemas.namespace import device_topics

router = APIRouter(tags=["provisioning"], responses=ERROR_RESPONSES)


@router.post("/claim-tokens", status_code=status.HTTP_201_CREATED, response_model=ClaimTokenCreated,
             summary="Create a claim token (the secret is shown once)")
def create_claim_token(body: ClaimTokenCreate, principal: DevicesWrite, db: DbDep) -> ClaimTokenCreated:
    import datetime as dt

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=body.expires_in_s)
    with db.tenant_tx(principal.tenant_id) as conn:
        row, secret = claims_crud.create(conn, tenant_id=principal.tenant_id, name=body.name, expires_at=expires,
                                         max_uses=body.max_uses, device_type=body.device_type, tags=body.tags)
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="claim_token.create",
                     target=f"claim_token:{row['id']}", details={"max_uses": body.max_uses})
    return ClaimTokenCreated(**ClaimTokenPublic.of(row).model_dump(), claim_token=secret)


@router.get("/claim-tokens", response_model=ClaimTokenList, summary="The tenant's claim tokens (no secrets)")
def list_claim_tokens(principal: DevicesWrite, db: DbDep) -> ClaimTokenList:
    with db.tenant_tx(principal.tenant_id) as conn:
        rows = claims_crud.list_tokens(conn, tenant_id=principal.tenant_id)
    return ClaimTokenList(data=[ClaimTokenPublic.of(r) for r in rows], count=len(rows))


@router.get("/claim-tokens/{token_id}", response_model=ClaimTokenPublic, summary="One claim token")
def get_claim_token(token_id: uuid.UUID, principal: DevicesWrite, db: DbDep) -> ClaimTokenPublic:
    with db.tenant_tx(principal.tenant_id) as conn:
        row = claims_crud.get(conn, tenant_id=principal.tenant_id, token_id=str(token_id))
    if row is None:
        raise not_found(f"claim token {token_id}")
    return ClaimTokenPublic.of(row)


@router.post("/claim-tokens/{token_id}/revoke", response_model=ClaimTokenPublic, summary="Revoke a claim token")
def revoke_claim_token(token_id: uuid.UUID, principal: DevicesWrite, db: DbDep) -> ClaimTokenPublic:
    with db.tenant_tx(principal.tenant_id) as conn:
        row = claims_crud.revoke(conn, tenant_id=principal.tenant_id, token_id=str(token_id))
        if row is None:
            raise not_found(f"claim token {token_id}")
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="claim_token.revoke",
                     target=f"claim_token:{token_id}")
    return ClaimTokenPublic.of(row)


@router.post("/provision", status_code=status.HTTP_201_CREATED, response_model=ProvisionResponse,
             summary="A device registers itself with a claim token and its CSR",
             responses={401: {"model": ErrorResponse, "description": "unknown, revoked or expired claim token"},
                        403: {"model": ErrorResponse, "description": "claim token has no uses left"},
                        409: {"model": ErrorResponse, "description": "device id already registered"}})
def provision(body: ProvisionRequest, admin: AdminDep, pki: PKIDep, s: SettingsDep) -> ProvisionResponse:
    out = provision_with_claim(admin, claim_token=body.claim_token, device_id=body.device_id,
                               csr_pem=body.csr_pem.encode())
    return ProvisionResponse(tenant_id=out.tenant_id, device_id=out.device_id, certificate_pem=out.certificate_pem,
                             ca_pem=pki.ca_cert.read_text(), serial=out.serial, mqtt_host=s.public_host,
                             mqtt_port=s.mqtt_tls_port, topics=device_topics(out.tenant_id, out.device_id))


@router.post("/device-types", status_code=status.HTTP_201_CREATED, response_model=DeviceTypePublic,
             summary="Create a device type (profile): defaults new devices of the type start with, declared metrics",
             responses=documented({409: "a device type of this name exists"}))
def create_device_type(body: DeviceTypeCreate, principal: DevicesWrite, db: DbDep, outbox: OutboxDep) -> DeviceTypePublic:
    import psycopg

    metrics = _metrics(body.metrics)
    with db.tenant_tx(principal.tenant_id) as conn:
        try:
            with conn.transaction():
                row = device_types.create(conn, tenant_id=principal.tenant_id, name=body.name,
                                          description=body.description, default_tags=body.default_tags,
                                          default_attributes=body.default_attributes, metrics=metrics)
        except psycopg.errors.UniqueViolation as exc:
            raise ApiError(409, "device_type_exists", f"device type {body.name!r} exists") from exc
        published = enqueue_device_type(conn, principal.tenant_id, body.name, row)
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="device_type.create",
                     target=f"device_type:{body.name}")
    outbox.wait([published])
    return DeviceTypePublic.of(row)


@router.put("/device-types/{name}/metrics", response_model=DeviceTypePublic,
            summary="Replace the type's metric declarations (applied once the validate agents' view has them)")
def set_device_type_metrics(name: str, body: DeviceTypeMetrics, principal: DevicesWrite, db: DbDep,
                            outbox: OutboxDep) -> DeviceTypePublic:
    with db.tenant_tx(principal.tenant_id) as conn:
        row = device_types.set_metrics(conn, tenant_id=principal.tenant_id, name=name, metrics=_metrics(body.metrics))
        if row is None:
            raise not_found(f"device type {name!r}")
        published = enqueue_device_type(conn, principal.tenant_id, name, row)
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="device_type.metrics",
                     target=f"device_type:{name}")
    outbox.wait([published])
    return DeviceTypePublic.of(row)


def _metrics(declared: dict[str, MetricDeclaration]) -> dict:
    return {name: d.model_dump(exclude_none=True) for name, d in declared.items()}


@router.get("/device-types", response_model=DeviceTypeList, summary="The tenant's device types")
def list_device_types(principal: DevicesRead, db: DbDep) -> DeviceTypeList:
    with db.tenant_tx(principal.tenant_id) as conn:
        rows = device_types.list_types(conn, tenant_id=principal.tenant_id)
    return DeviceTypeList(data=[DeviceTypePublic.of(r) for r in rows], count=len(rows))


@router.get("/device-types/{name}", response_model=DeviceTypePublic, summary="One device type")
def get_device_type(name: str, principal: DevicesRead, db: DbDep) -> DeviceTypePublic:
    with db.tenant_tx(principal.tenant_id) as conn:
        row = device_types.get(conn, tenant_id=principal.tenant_id, name=name)
    return DeviceTypePublic.of(found(row, f"device type {name!r}"))


@router.delete("/device-types/{name}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete a device type (devices keep their type name and values)")
def delete_device_type(name: str, principal: DevicesWrite, db: DbDep, outbox: OutboxDep) -> None:
    with db.tenant_tx(principal.tenant_id) as conn:
        if not device_types.delete(conn, tenant_id=principal.tenant_id, name=name):
            raise not_found(f"device type {name!r}")
        published = enqueue_device_type(conn, principal.tenant_id, name, None)
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="device_type.delete",
                     target=f"device_type:{name}")
    outbox.wait([published])
