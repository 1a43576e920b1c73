"""``POST /v1/ingest``: devices send canonical JSON readings over HTTP (adr/0044).

Authentication is the device's own: a JWT it signed with its registered ES256 key
(``Authorization: Bearer``), or a client certificate forwarded by a trusted TLS-terminating ingress
(``X-Client-Cert``). Tenant and device come from that identity only. ``202`` is answered only after
Kafka confirmed every record; a batch with some bad readings keeps the good ones (``rejected`` lists the
others, each also dead-lettered)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from connectors.http import ConnectorError, http_headers
from gateway.api.deps import IngestDep
from gateway.errors import ApiError, ErrorResponse

router = APIRouter(prefix="/ingest", tags=["ingest"])


class Rejected(BaseModel):
    code: str
    reason: str


class IngestAccepted(BaseModel):
    accepted: int
    rejected: list[Rejected]


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
