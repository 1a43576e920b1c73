"""Fleet provisioning: a tenant issues claim tokens; a device presents one with its CSR over HTTPS and
gets its certificate chain. The claim token is the device's only credential here: no tenant token."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, status

from connectors.mqtt.namespace import device_topics
from gateway.api.deps import DevicesWrite
from gateway.crud import audit
from gateway.crud import claim_tokens as claims_crud
from gateway.errors import ERROR_RESPONSES, ErrorResponse, not_found
from gateway.identity.provisioning import provision_with_claim
from gateway.models.provisioning import (
    ClaimTokenCreate,
    ClaimTokenCreated,
    ClaimTokenList,
    ClaimTokenPublic,
    ProvisionRequest,
    ProvisionResponse,
)

router = APIRouter(tags=["provisioning"], responses=ERROR_RESPONSES)


@router.post("/claim-tokens", status_code=status.HTTP_201_CREATED, response_model=ClaimTokenCreated,
             summary="Create a claim token (the secret is shown once)")
def create_claim_token(request: Request, body: ClaimTokenCreate, principal: DevicesWrite) -> ClaimTokenCreated:
    import datetime as dt

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=body.expires_in_s)
    with request.app.state.db.tenant_tx(principal.tenant_id) as conn:
        row, secret = claims_crud.create(conn, tenant_id=principal.tenant_id, name=body.name, expires_at=expires,
                                         max_uses=body.max_uses, device_type=body.device_type, tags=body.tags)
        audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id, action="claim_token.create",
                     target=f"claim_token:{row['id']}", details={"max_uses": body.max_uses})
    return ClaimTokenCreated(**ClaimTokenPublic.of(row).model_dump(), claim_token=secret)


@router.get("/claim-tokens", response_model=ClaimTokenList, summary="The tenant's claim tokens (no secrets)")
def list_claim_tokens(request: Request, principal: DevicesWrite) -> ClaimTokenList:
    with request.app.state.db.tenant_tx(principal.tenant_id) as conn:
        rows = claims_crud.list_tokens(conn, tenant_id=principal.tenant_id)
    return ClaimTokenList(data=[ClaimTokenPublic.of(r) for r in rows], count=len(rows))


@router.get("/claim-tokens/{token_id}", response_model=ClaimTokenPublic, summary="One claim token")
def get_claim_token(request: Request, token_id: uuid.UUID, principal: DevicesWrite) -> ClaimTokenPublic:
    with request.app.state.db.tenant_tx(principal.tenant_id) as conn:
        row = claims_crud.get(conn, tenant_id=principal.tenant_id, token_id=str(token_id))
    if row is None:
        raise not_found(f"claim token {token_id}")
    return ClaimTokenPublic.of(row)


@router.post("/claim-tokens/{token_id}/revoke", response_model=ClaimTokenPublic, summary="Revoke a claim token")
def revoke_claim_token(request: Request, token_id: uuid.UUID, principal: DevicesWrite) -> ClaimTokenPublic:
    with request.app.state.db.tenant_tx(principal.tenant_id) as conn:
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
def provision(request: Request, body: ProvisionRequest) -> ProvisionResponse:
    admin = request.app.state.admin
    out = provision_with_claim(admin, claim_token=body.claim_token, device_id=body.device_id,
                               csr_pem=body.csr_pem.encode())
    s = request.app.state.settings
    return ProvisionResponse(tenant_id=out.tenant_id, device_id=out.device_id, certificate_pem=out.certificate_pem,
                             ca_pem=admin.pki.ca_cert.read_text(), serial=out.serial, mqtt_host=s.public_host,
                             mqtt_port=s.mqtt_tls_port, topics=device_topics(out.tenant_id, out.device_id))
