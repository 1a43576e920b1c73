"""``POST /v1/ingest``: devices send canonical JSON readings over HTTP (adr/0044).

Authentication is the device's own: a JWT it signed with its registered ES256 key
(``Authorization: Bearer``), or a client certificate forwarded by a trusted TLS-terminating ingress
(``X-Client-Cert``). Tenant and device come from that identity only. ``202`` is answered only after
Kafka confirmed every record; a batch with some bad readings keeps the good ones (``rejected`` lists the
others, each also dead-lettered)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from connectors.auth.device_jwt import DeviceJwtVerifier, DeviceKey
from connectors.base import Admission
from connectors.errors import ConnectorError
from connectors.http import DeviceAuthenticator, HttpIngestConnector
from connectors.http.errors import http_headers
from connectors.ratelimit import TokenBuckets
from connectors.registry import ALLOWED_STATUSES
from connectors.uplink import UplinkPublisher
from fleetstream.settings import Settings
from gateway.admin import Admin
from gateway.api.deps import AdminDep, AuthStateDep, DbDep, SettingsDep, per_app
from gateway.auth.revocation import AuthState
from gateway.crud import credentials as creds_crud
from gateway.crud import devices as devices_crud
from gateway.db.session import Database
from gateway.errors import ApiError, ErrorResponse

router = APIRouter(prefix="/ingest", tags=["ingest"])


class Rejected(BaseModel):
    code: str
    reason: str


class IngestAccepted(BaseModel):
    accepted: int
    rejected: list[Rejected]


class IngestService:
    """The gateway's HTTP ingest: device authentication against Postgres and the tenant CAs, and the
    connector that admits and publishes readings."""

    def __init__(self, s: Settings, db: Database, admin: Admin, auth_state: AuthState):

        def key_lookup(tenant_id: str, device_id: str, kid: str) -> DeviceKey | None:
            # only the key of the device the token names (iss = tenant, sub = device): adr/0106
            with db.pool.connection() as conn:
                row = creds_crud.device_key(conn, tenant_id=tenant_id, device_id=device_id, key_id=kid)
            if row is None:
                return None
            return DeviceKey(kid, tenant_id, device_id, row["public_key_pem"],
                             active=row["device_status"] in ALLOWED_STATUSES and row["tenant_status"] == "active")

        def tenant_ca(tenant_id: str) -> str | None:
            try:
                return admin.cas.ca_certificate_pem(tenant_id)
            except Exception:  # no CA: no such tenant
                return None

        def device_status(tenant_id: str, device_id: str) -> str | None:
            with db.tenant_tx(tenant_id) as conn:
                row = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=device_id)
            if row and auth_state.tenant_refused(tenant_id):
                return "suspended"  # the tenant's, not the device's: refused all the same (adr/0107)
            return row["status"] if row else None

        self.auth = DeviceAuthenticator(DeviceJwtVerifier(key_lookup), tenant_ca=tenant_ca,
                                        device_status=device_status,
                                        trusted_proxies=getattr(s, "ingest_trusted_proxies", []))
        rate = TokenBuckets(getattr(s, "ingest_rate_per_s", 100.0), getattr(s, "ingest_burst", 200.0))
        # the key lookup already refused unknown and suspended devices; admission adds the rate limit
        self.connector = HttpIngestConnector(UplinkPublisher(s.bootstrap_servers, "http", instance="gateway"),
                                             Admission(None, rate, require_registered=False),
                                             max_skew_ms=s.max_clock_skew_s * 1000)


async def get_ingest(conn: HTTPConnection, s: SettingsDep, db: DbDep, admin: AdminDep,
                     auth_state: AuthStateDep) -> IngestService:
    """One service per app, made at the first ingest request (its Kafka producer is not needed before)."""
    return per_app(conn, "ingest", lambda: IngestService(s, db, admin, auth_state))


IngestDep = Annotated[IngestService, Depends(get_ingest)]


def _api_error(err: ConnectorError) -> ApiError:
    return ApiError(err.status, err.code, str(err), http_headers(err) or None)


@router.post("", status_code=202, response_model=IngestAccepted,
             responses={s: {"model": ErrorResponse} for s in (400, 401, 403, 413, 429, 503)},
             summary="Send readings as a device",
             description='Body: `{"ts": <epoch ms>, "values": {...}}` or a list of them (the canonical payload).')
async def ingest(request: Request, svc: IngestDep, authorization: Annotated[str | None, Header()] = None,
                 x_client_cert: Annotated[str | None, Header()] = None) -> IngestAccepted:
    # The request guard (gateway/api/request_guard.py) has already refused a body over MAX_PAYLOAD_BYTES,
    # Content-Length or chunked, with 413 before this runs.
    peer = request.client.host if request.client else None
    try:
        tenant_id, device_id = await run_in_threadpool(svc.auth.authenticate, authorization, x_client_cert, peer)
        body = await request.body()
        result = await svc.connector.ingest(tenant_id, device_id, body)
    except ConnectorError as exc:
        raise _api_error(exc) from exc
    return IngestAccepted(accepted=result.accepted, rejected=[Rejected(**r) for r in result.rejected])
