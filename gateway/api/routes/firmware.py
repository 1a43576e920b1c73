"""Firmware releases: upload (signed, immutable), list, the tenant's signing key, per-device download
links, and the download itself (Range requests, authorised by the link's token alone)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gateway.api.deps import DbDep, OtaDep, require
from gateway.auth.tokens import Principal
from gateway.crud.devices import get_device
from gateway.errors import ERROR_RESPONSES, ApiError, documented, not_found
from gateway.ota import releases
from gateway.ota.artifacts import ArtifactTooLargeError, is_semver
from gateway.ota.download_links import LinkError
from gateway.ota.signing import build_manifest
from schemas.strict import Text

router = APIRouter(prefix="/firmware", tags=["firmware"], responses=ERROR_RESPONSES)
OtaWrite = Annotated[Principal, Depends(require("ota:write"))]
DEVICE_TYPE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ReleaseOut(BaseModel):
    device_type: str
    version: str
    sha256: str
    size: int
    manifest: str = Field(description="the exact JSON bytes the signature covers")
    signature: str = Field(description="base64 Ed25519 signature over `manifest`")
    key_id: str
    created_at: dt.datetime


class ReleaseList(BaseModel):
    data: list[ReleaseOut]
    count: int


class SigningKeyOut(BaseModel):
    algorithm: str = "Ed25519"
    key_id: str
    public_key_pem: str


class LinkIn(BaseModel):
    device_id: Text = Field(min_length=1, max_length=64)
    ttl_s: int = Field(900, ge=10, le=86_400)


class LinkOut(BaseModel):
    url: str
    expires_at: int


def _out(r: dict) -> ReleaseOut:
    return ReleaseOut(device_type=r["device_type"], version=r["version"], sha256=r["sha256"], size=r["size"],
                      manifest=r["manifest_json"], signature=r["signature"], key_id=r["key_id"],
                      created_at=r["created_at"])


@router.post("", status_code=201, response_model=ReleaseOut, summary="Upload a firmware release (immutable)",
             responses=documented({409: "this device type already has this version"}))
async def upload_firmware(principal: OtaWrite, db: DbDep, ota: OtaDep,
                          device_type: Annotated[str, Form(pattern=DEVICE_TYPE)],
                          version: Annotated[str, Form(min_length=1, max_length=128)],
                          file: Annotated[UploadFile, File(description="the firmware image")]) -> ReleaseOut:
    if not is_semver(version):
        raise ApiError(422, "invalid_version", f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    tenant = principal.tenant_id

    def store():
        try:
            sha, size = ota.artifacts.put(file.file)
        except ArtifactTooLargeError as exc:
            raise ApiError(413, "artifact_too_large", str(exc)) from exc
        kid = ota.signer.key_id(tenant)
        manifest = build_manifest(tenant_id=tenant, device_type=device_type, version=version, sha256=sha, size=size,
                                  kid=kid)
        with db.tenant_tx(tenant) as conn:
            try:
                return releases.create_release(conn, tenant_id=tenant, device_type=device_type, version=version,
                                               sha256=sha, size=size, manifest_json=manifest,
                                               signature=ota.signer.sign(manifest, tenant), key_id=kid)
            except releases.ReleaseExistsError as exc:
                raise ApiError(409, "version_exists", str(exc)) from exc

    return _out(await run_in_threadpool(store))


@router.get("", response_model=ReleaseList, summary="Firmware releases of this tenant")
async def list_firmware(principal: OtaWrite, db: DbDep,
                        device_type: Annotated[str | None, Query(pattern=DEVICE_TYPE)] = None) -> ReleaseList:
    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            return releases.list_releases(conn, tenant_id=principal.tenant_id, device_type=device_type)

    rows = await run_in_threadpool(run)
    return ReleaseList(data=[_out(r) for r in rows], count=len(rows))


@router.get("/signing-key", response_model=SigningKeyOut, summary="The public key devices verify manifests with")
async def signing_key(principal: OtaWrite, ota: OtaDep) -> SigningKeyOut:
    signer = ota.signer
    return SigningKeyOut(key_id=await run_in_threadpool(signer.key_id, principal.tenant_id),
                         public_key_pem=signer.public_key_pem(principal.tenant_id))


@router.get("/download/{token}", summary="Download an artifact (Range supported); the token is the authorisation",
            response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the artifact (or the requested range of it)"},
                       **documented({403: "link expired or forged"})})
async def download(token: str, db: DbDep, ota: OtaDep) -> FileResponse:
    try:
        claims = ota.links.verify(token)
    except LinkError as exc:
        raise ApiError(403, "invalid_link", str(exc)) from exc

    def run():
        with db.tenant_tx(claims.tenant_id) as conn:
            return releases.release_with_sha(conn, tenant_id=claims.tenant_id, sha256=claims.sha256)

    if await run_in_threadpool(run) is None:  # the release was deleted with its tenant
        raise not_found("artifact")
    path = ota.artifacts.path(claims.sha256)
    if not path.exists():
        raise not_found("artifact")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{claims.sha256}.bin",
                        headers={"Cache-Control": "private, no-store"})


@router.get("/{device_type}/{version}", response_model=ReleaseOut, summary="One release")
async def get_firmware(principal: OtaWrite, device_type: str, version: str, db: DbDep) -> ReleaseOut:
    def run():
        with db.tenant_tx(principal.tenant_id) as conn:
            return releases.get_release(conn, tenant_id=principal.tenant_id, device_type=device_type, version=version)

    row = await run_in_threadpool(run)
    if row is None:
        raise not_found(f"firmware {device_type} {version}")
    return _out(row)


@router.post("/{device_type}/{version}/links", response_model=LinkOut, status_code=201,
             summary="A short-lived download link for one device (campaign jobs carry their own)")
async def create_link(principal: OtaWrite, device_type: str, version: str, body: LinkIn, db: DbDep,
                      ota: OtaDep) -> LinkOut:
    tenant = principal.tenant_id

    def run():
        with db.tenant_tx(tenant) as conn:
            rel = releases.get_release(conn, tenant_id=tenant, device_type=device_type, version=version)
            dev = get_device(conn, tenant_id=tenant, device_id=body.device_id)
            return rel, dev

    rel, dev = await run_in_threadpool(run)
    if rel is None:
        raise not_found(f"firmware {device_type} {version}")
    if dev is None:
        raise not_found(f"device {body.device_id!r}")
    token = ota.links.issue(tenant_id=tenant, device_id=body.device_id, sha256=rel["sha256"], ttl_s=body.ttl_s)
    return LinkOut(url=f"{ota.base_url}/v1/firmware/download/{token}",
                   expires_at=int(dt.datetime.now(dt.UTC).timestamp()) + body.ttl_s)
