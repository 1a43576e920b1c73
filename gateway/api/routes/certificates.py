"""A device's credentials: X.509 certificates (CSR signing or a generated key pair), ES256 JWT keys, and
the tenant CA's certificate and CRL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from gateway.api.deps import AdminDep, DbDep, DevicesRead, DevicesWrite, PKIDep
from gateway.crud import credentials as creds_crud
from gateway.crud import devices as devices_crud
from gateway.errors import ERROR_RESPONSES, not_found
from gateway.models.credentials import (
    CertificateIssued,
    CertificatePublic,
    CertificateRequest,
    KeyCreate,
    KeyPublic,
)

router = APIRouter(tags=["credentials"], responses=ERROR_RESPONSES)


def _device_or_404(conn, tenant_id: str, device_id: str) -> dict:
    row = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=device_id)
    if row is None:
        raise not_found(f"device {device_id!r}")
    return row


@router.post("/devices/{device_id}/certificates", status_code=status.HTTP_201_CREATED,
             response_model=CertificateIssued, summary="Sign the device's CSR, or generate a key pair (shown once)")
def issue_certificate(device_id: str, body: CertificateRequest, principal: DevicesWrite, admin: AdminDep,
                      pki: PKIDep) -> CertificateIssued:
    issued = admin.issue_certificate(principal.tenant_id, device_id, days=body.days, actor=principal.client_id,
                                     csr_pem=body.csr_pem.encode() if body.csr_pem else None)
    return CertificateIssued(serial=issued.serial, fingerprint_sha256=issued.fingerprint_sha256,
                             not_after=issued.not_after, certificate_pem=issued.certificate_pem,
                             ca_pem=pki.ca_cert.read_text(), private_key_pem=issued.private_key_pem)


@router.get("/devices/{device_id}/certificates", response_model=list[CertificatePublic],
            summary="The device's certificates")
def list_certificates(device_id: str, principal: DevicesRead, db: DbDep) -> list[CertificatePublic]:
    with db.tenant_tx(principal.tenant_id) as conn:
        _device_or_404(conn, principal.tenant_id, device_id)
        rows = creds_crud.list_certificates(conn, tenant_id=principal.tenant_id, device_id=device_id)
    return [CertificatePublic.of(r) for r in rows]


@router.post("/devices/{device_id}/certificates/{serial}/revoke", response_model=CertificatePublic,
             summary="Revoke a certificate (listed in the tenant CRL)")
def revoke_certificate(device_id: str, serial: str, principal: DevicesWrite,
                       admin: AdminDep) -> CertificatePublic:
    row = admin.revoke_certificate(principal.tenant_id, device_id, serial, actor=principal.client_id)
    return CertificatePublic.of(row)


@router.post("/devices/{device_id}/keys", status_code=status.HTTP_201_CREATED, response_model=KeyPublic,
             summary="Register an ES256 public key the device signs its HTTP/CoAP JWTs with (proof of possession)")
def add_key(device_id: str, body: KeyCreate, principal: DevicesWrite, admin: AdminDep) -> KeyPublic:
    row = admin.add_jwt_key(principal.tenant_id, device_id, body.public_key_pem, proof=body.proof,
                            actor=principal.client_id)
    return KeyPublic.of(row)


@router.get("/devices/{device_id}/keys", response_model=list[KeyPublic], summary="The device's JWT keys")
def list_keys(device_id: str, principal: DevicesRead, db: DbDep) -> list[KeyPublic]:
    with db.tenant_tx(principal.tenant_id) as conn:
        _device_or_404(conn, principal.tenant_id, device_id)
        rows = creds_crud.list_keys(conn, tenant_id=principal.tenant_id, device_id=device_id)
    return [KeyPublic.of(r) for r in rows]


@router.post("/devices/{device_id}/keys/{key_id}/revoke", response_model=KeyPublic, summary="Revoke a JWT key")
def revoke_key(device_id: str, key_id: str, principal: DevicesWrite, admin: AdminDep) -> KeyPublic:
    row = admin.revoke_jwt_key(principal.tenant_id, device_id, key_id, actor=principal.client_id)
    return KeyPublic.of(row)


@router.get("/ca/certificate", summary="The tenant's issuing CA certificate and the platform root (PEM)",
            response_class=Response, responses={200: {"content": {"application/x-pem-file": {}}}})
def ca_certificate(principal: DevicesRead, admin: AdminDep, pki: PKIDep) -> Response:
    tenant_ca = admin.cas.ca_certificate_pem(principal.tenant_id)
    if tenant_ca is None:
        raise not_found("tenant CA")
    pem = tenant_ca + pki.ca_cert.read_text()
    return Response(pem, media_type="application/x-pem-file")


@router.get("/ca/crl", summary="The tenant CA's certificate revocation list (DER, or PEM with ?format=pem)",
            response_class=Response,
            responses={200: {"content": {"application/pkix-crl": {}, "application/x-pem-file": {}}}})
def crl(principal: DevicesRead, admin: AdminDep,
        format: Annotated[str, Query(pattern="^(der|pem)$")] = "der") -> Response:
    import base64
    import textwrap

    der = admin.crl_der(principal.tenant_id)
    if format == "pem":
        body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
        return Response(f"-----BEGIN X509 CRL-----\n{body}\n-----END X509 CRL-----\n",
                        media_type="application/x-pem-file")
    return Response(der, media_type="application/pkix-crl")
