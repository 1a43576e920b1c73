"""Calls a production broker makes to the platform (adr/0139): EMQX's HTTP authorization source.

Not part of the tenant API (no OpenAPI entry, no ``/v1``): EMQX authenticates with the bearer secret of its
source configuration (helm/fleetstream/files/emqx-values.yaml), and the route answers 404 while no secret is
set, so a platform that runs Mosquitto exposes nothing here.
"""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import BrokerAuthzDep, SettingsDep
from gateway.broker.emqx import DENY

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024


@router.post("/internal/broker/emqx/authz")
async def emqx_authz(request: Request, s: SettingsDep, decide: BrokerAuthzDep) -> JSONResponse:
    secret = s.broker_hook_secret
    if not secret:
        return JSONResponse({"detail": "not found"}, status_code=404)
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
        return JSONResponse({"detail": "unauthorised"}, status_code=401)
    body = await request.body()
    try:
        req = json.loads(body) if len(body) <= MAX_BODY_BYTES else None
    except ValueError:
        req = None
    if not isinstance(req, dict):
        return JSONResponse({"result": DENY})
    try:
        # Postgres on a worker thread: the event loop keeps serving while a device status is looked up
        result = await run_in_threadpool(decide, req)
    except Exception:  # noqa: BLE001 — a broken lookup must refuse, never fall through to "ignore"
        log.exception("EMQX authorization: lookup failed, refusing %s", req.get("username"))
        result = DENY
    return JSONResponse({"result": result})
