"""All routers, under the versioned prefix."""

from fastapi import APIRouter

from gateway.live import sse as live_sse
from gateway.live import websocket as live_ws
from gateway.ota.artifacts import MAX_ARTIFACT_BYTES
from schemas.limits import MAX_PAYLOAD_BYTES

from .request_guard import BodyLimit, BodyLimits
from .routes import admin as control_admin
from .routes import (
    alerts,
    broker_hooks,
    certificates,
    clients,
    commands,
    devices,
    health,
    ingest,  # devices' HTTP ingest (issue 4)
    kafka_credentials,  # data engineers' Kafka access (issue 14)
    kafka_export,  # a tenant's continuous export topic (issue 14, adr/0146)
    oauth,
    provisioning,
    rejections,
    rules,
    session,
    shadow,
    sso,
    telemetry,
    users,
)
from .routes import firmware as ota_firmware  # OTA (issue 8)
from .routes import graphql as graphql_api  # issue 6
from .routes import ota as ota_campaigns

api_router = APIRouter(prefix="/v1")
api_router.include_router(oauth.router)
for _r in (control_admin, devices, certificates, clients, provisioning):  # control plane (issue 3)
    api_router.include_router(_r.router)
api_router.include_router(telemetry.router)
api_router.include_router(commands.router)
api_router.include_router(shadow.router)
api_router.include_router(rules.router)
api_router.include_router(alerts.router)
api_router.include_router(rejections.device_router)
api_router.include_router(rejections.router)
api_router.include_router(telemetry.fleet_router)
for _r in (live_ws, live_sse):  # live delivery (issue 6)
    api_router.include_router(_r.router)
api_router.include_router(ota_firmware.router)
api_router.include_router(ota_campaigns.router)
api_router.include_router(ingest.router)
api_router.include_router(kafka_credentials.router)
for _r in (session, users, sso):  # people: sessions, users and roles (issue 17)
    api_router.include_router(_r.router)
api_router.include_router(kafka_export.router)

root_router = APIRouter()
root_router.include_router(health.router)
root_router.include_router(broker_hooks.router)  # adr/0139
root_router.include_router(graphql_api.router, prefix="/graphql")  # issue 6

# Request body limits (adr/0109), enforced by gateway/api/request_guard.py before any handler runs and
# published in the OpenAPI document as each operation's x-body-limit and 413 response.
BODY_LIMITS = BodyLimits(
    default=1024 * 1024,  # the largest JSON document (a rule scoped to 10,000 devices) is ~700 KB
    routes=(
        BodyLimit("POST", "/v1/devices/bulk", 8 * 1024 * 1024),  # 1,000 devices with their attributes
        BodyLimit("POST", "/v1/devices/import", 16 * 1024 * 1024),  # CSV
        BodyLimit("POST", "/v1/firmware", MAX_ARTIFACT_BYTES + 1024 * 1024),  # the image plus form fields
        BodyLimit("POST", "/v1/ingest", MAX_PAYLOAD_BYTES),  # a device's readings (connectors/canonical.py)
    ),
)
