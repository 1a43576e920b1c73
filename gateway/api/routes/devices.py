"""Devices of the token's tenant: create, read, list, update, lifecycle, connection details, CSV import.

Handlers are plain functions (FastAPI runs them in its thread pool): Postgres and the broker client are
blocking. Ownership is never checked here: every query runs in the token's tenant transaction (RLS)."""

from __future__ import annotations

import base64
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from gateway.api.deps import AdminDep, DbDep, DevicesRead, DevicesWrite, PKIDep, SettingsDep, StoreDep
from gateway.crud import devices as devices_crud
from gateway.db.session import Database
from gateway.errors import ERROR_RESPONSES, ApiError, not_found
from gateway.identity.provisioning import create_devices, import_devices, issue_certificates, parse_csv
from gateway.models.devices import (
    DEVICE_ID_PATTERN,
    TAG_PATTERN,
    CoapEndpoint,
    ConnectionInfo,
    DeviceCreate,
    DeviceList,
    DevicePublic,
    DeviceUpdate,
    HttpEndpoint,
    MqttEndpoint,
    Status,
)
from gateway.models.devices_bulk import BulkDeviceCreate, BulkDeviceReport, BulkDeviceResult
from gateway.models.provisioning import ImportReport, ImportRowResult
from schemas.namespace import device_topics

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERROR_RESPONSES)
log = logging.getLogger(__name__)
CONFLICT = {409: {"model": ERROR_RESPONSES[404]["model"], "description": "the change conflicts with the state"}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DevicePublic, responses=CONFLICT,
             summary="Register a device and authorise its MQTT namespace")
def create_device(body: DeviceCreate, principal: DevicesWrite, admin: AdminDep, db: DbDep) -> DevicePublic:
    admin.create_device(principal.tenant_id, body.device_id, device_type=body.device_type, tags=body.tags,
                        attributes=body.attributes, actor=principal.client_id)
    return _get(db, principal.tenant_id, body.device_id)


@router.get("", response_model=DeviceList, summary="List devices (keyset pagination, filters)")
def list_devices(principal: DevicesRead, db: DbDep,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
                 status_: Annotated[Status | None, Query(alias="status")] = None,
                 device_type: Annotated[str | None, Query(alias="type", pattern=DEVICE_ID_PATTERN)] = None,
                 tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None) -> DeviceList:
    after = _decode_cursor(cursor) if cursor else None
    with db.tenant_tx(principal.tenant_id) as conn:
        rows = devices_crud.list_devices(conn, tenant_id=principal.tenant_id, limit=limit, after=after,
                                         status=status_, device_type=device_type, tag=tag)
    nxt = base64.urlsafe_b64encode(rows[-1]["device_id"].encode()).decode() if len(rows) == limit else None
    return DeviceList(data=[DevicePublic.of(r) for r in rows], count=len(rows), next_cursor=nxt)


@router.post("/import", response_model=ImportReport, summary="Bulk import devices from CSV",
             openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}, "example":
                            "device_id,device_type,tags,attributes\nmeter-1,meter,site-a;floor-2,\"{\"\"k\"\": 1}\"\n"}},
                            "required": True}})
async def import_csv(request: Request, principal: DevicesWrite, admin: AdminDep) -> ImportReport:
    from fastapi.concurrency import run_in_threadpool

    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "invalid_csv", "the CSV must be UTF-8") from exc
    rows = parse_csv(text)
    results = await run_in_threadpool(import_devices, admin, principal.tenant_id, rows,
                                      actor=principal.client_id)
    created = sum(1 for r in results if r["status"] == "created")
    return ImportReport(created=created, failed=len(results) - created, rows=[ImportRowResult(**r) for r in results])


@router.post("/bulk", response_model=BulkDeviceReport, summary="Register many devices in one call (one broker round trip)")
def create_bulk(body: BulkDeviceCreate, principal: DevicesWrite, admin: AdminDep,
                pki: PKIDep) -> BulkDeviceReport:
    """Each device is created or reported (``device_exists``); the broker authorises all new ones together,
    so a fleet costs one call instead of one per device (adr/0035)."""
    items = [({"index": i, "device_id": d.device_id},
              {"device_id": d.device_id, "device_type": d.device_type, "tags": d.tags, "attributes": d.attributes})
             for i, d in enumerate(body.devices)]
    results = create_devices(admin, principal.tenant_id, items, actor=principal.client_id)
    created = [r["device_id"] for r in results if r.get("status") == "created"]
    if body.issue_certificates and created:
        issued = issue_certificates(admin, principal.tenant_id, created, actor=principal.client_id)
        for r in results:
            if (c := issued.get(r["device_id"])) and r.get("status") == "created":
                r.update(certificate_pem=c.certificate_pem, private_key_pem=c.private_key_pem, serial=c.serial)
    return BulkDeviceReport(created=len(created), failed=len(results) - len(created),
                            ca_pem=pki.ca_cert.read_text(), devices=[BulkDeviceResult(**r) for r in results])


@router.get("/{device_id}", response_model=DevicePublic, summary="One device, with its refusals per reason")
def get_device(device_id: str, principal: DevicesRead, db: DbDep, store: StoreDep) -> DevicePublic:
    device = _get(db, principal.tenant_id, device_id)
    try:
        device.rejections = store.rejection_counts(tenant_id=principal.tenant_id, device_id=device_id)
    except Exception:  # the device is still worth answering without its counts (adr/0180)
        log.warning("could not read rejection counts of %s", device_id, exc_info=True)
    return device


@router.patch("/{device_id}", response_model=DevicePublic, summary="Update type, tags and attributes")
def update_device(device_id: str, body: DeviceUpdate, principal: DevicesWrite,
                  admin: AdminDep) -> DevicePublic:
    row = admin.update_device(principal.tenant_id, device_id, actor=principal.client_id,
                              attributes=body.attributes, tags=body.tags, device_type=body.device_type)
    return DevicePublic.of(row)


def _lifecycle(action: str, summary: str):
    def handler(device_id: str, principal: DevicesWrite, admin: AdminDep) -> DevicePublic:
        row = admin.change_status(principal.tenant_id, device_id, action, actor=principal.client_id)
        return DevicePublic.of(row)

    handler.__name__ = f"{action}_device"
    router.post(f"/{{device_id}}/{action}", response_model=DevicePublic, responses=CONFLICT, summary=summary,
                name=handler.__name__)(handler)


_lifecycle("suspend", "Suspend: the broker drops the live session and refuses reconnects")
_lifecycle("resume", "Resume a suspended device")
_lifecycle("decommission", "Decommission for good: credentials revoked, broker client disabled, data kept")


@router.get("/{device_id}/connection", response_model=ConnectionInfo, summary="How this device connects")
def connection(device_id: str, principal: DevicesRead, db: DbDep, s: SettingsDep) -> ConnectionInfo:
    _get(db, principal.tenant_id, device_id)
    tenant = principal.tenant_id
    return ConnectionInfo(
        tenant_id=tenant, device_id=device_id,
        mqtt=MqttEndpoint(host=s.public_host, port=s.mqtt_tls_port, client_id=f"{tenant}.{device_id}",
                          topics=device_topics(tenant, device_id)),
        http=HttpEndpoint(ingest_url=f"{s.gateway_url}/v1/ingest"),
        coap=CoapEndpoint(url=f"coap://{s.public_host}:{s.coap_port}/telemetry"),
        ca_certificate_url=f"{s.gateway_url}/v1/ca/certificate", docs=device_docs(s.device_docs_url))


def device_docs(base: str) -> dict[str, str]:
    """Where a device maker reads the contract (issue 20): one page per protocol, the JWT, provisioning."""
    base = base.rstrip("/")
    return {"overview": f"{base}/README.md", "mqtt": f"{base}/mqtt.md", "http": f"{base}/http.md",
            "coap": f"{base}/coap.md", "device_jwt": f"{base}/device-jwt.md",
            "provisioning": f"{base}/provisioning.md", "examples": f"{base}/examples/"}


def _get(db: Database, tenant_id: str, device_id: str) -> DevicePublic:
    with db.tenant_tx(tenant_id) as conn:
        row = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=device_id)
    if row is None:
        raise not_found(f"device {device_id!r}")
    return DevicePublic.of(row)


def _decode_cursor(cursor: str) -> str:
    import re

    try:
        value = base64.urlsafe_b64decode(cursor.encode()).decode()
    except ValueError as exc:
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned") from exc
    if not re.match(DEVICE_ID_PATTERN, value):
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned")
    return value
