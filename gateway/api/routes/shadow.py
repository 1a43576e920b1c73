"""Device shadow: ``GET /v1/devices/{id}/shadow`` and ``PATCH /v1/devices/{id}/shadow/desired``.

The document is the shadow agent's latest (streams/shadows.py), read from the gateway's view, so it is
readable while the device is offline. A PATCH is answered by the agent (request/response over Kafka,
adr/0053): ``If-Match: <version>`` makes it conditional, and a stale version gets 412.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel

from gateway.api.deps import DbDep, StreamsDep, require
from gateway.auth.tokens import Principal
from gateway.errors import ERROR_RESPONSES, ApiError, documented
from schemas import codec, device_key, topics
from schemas.strict import JsonObject

from .commands import _device_or_404

router = APIRouter(prefix="/devices", tags=["shadow"], responses=ERROR_RESPONSES)

ANSWER_TIMEOUT_S = 15
MAX_BYTES = 64 * 1024


class ShadowOut(BaseModel):
    device_id: str
    version: int
    desired: dict[str, Any]
    reported: dict[str, Any]
    delta: dict[str, Any]
    metadata: dict[str, Any]
    updated_at: int | None = None


def _out(device_id: str, doc: dict | None) -> ShadowOut:
    if doc is None:
        return ShadowOut(device_id=device_id, version=0, desired={}, reported={}, delta={},
                         metadata={"desired": {}, "reported": {}})
    return ShadowOut(device_id=device_id, version=doc["version"], desired=json.loads(doc["desired_json"]),
                     reported=json.loads(doc["reported_json"]), delta=json.loads(doc["delta_json"]),
                     metadata=json.loads(doc["metadata_json"]), updated_at=doc["time"])


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip().strip('W/').strip('"'))
    except ValueError as exc:
        raise ApiError(400, "bad_if_match", "If-Match must be a shadow version number") from exc


@router.get("/{device_id}/shadow", response_model=ShadowOut, summary="The device's shadow (version 0: none yet)")
async def get_shadow(device_id: str, principal: Annotated[Principal, Depends(require("devices:read"))],
                     db: DbDep, streams: StreamsDep):
    await _device_or_404(db, principal.tenant_id, device_id)
    out = _out(device_id, streams.shadow(principal.tenant_id, device_id))
    return _with_etag(out)


@router.patch("/{device_id}/shadow/desired", response_model=ShadowOut,
              responses=documented({412: "If-Match is not the current version",
                                    504: "the shadow agent did not answer in time"}),
              summary="Merge into desired state (null deletes a key); If-Match: version makes it conditional")
async def patch_desired(device_id: str, body: JsonObject,
                        principal: Annotated[Principal, Depends(require("devices:write"))],
                        db: DbDep, streams: StreamsDep,
                        if_match: Annotated[str | None, Header()] = None):
    tenant = principal.tenant_id
    await _device_or_404(db, tenant, device_id)
    expected = _if_match(if_match)
    state = json.dumps(body, separators=(",", ":"))
    if len(state) > MAX_BYTES:
        raise ApiError(413, "shadow_too_large", f"a shadow holds at most {MAX_BYTES} bytes")
    request_id = str(uuid.uuid4())
    rec = {"tenant_id": tenant, "device_id": device_id, "side": "DESIRED", "state_json": state,
           "time": time.time_ns() // 1_000_000, "expected_version": expected, "request_id": request_id}
    answer = streams.expect(request_id)
    try:
        await streams.produce(topics.SHADOW_UPDATES.name, device_key(tenant, device_id),
                              codec("shadow_update").encode(rec))
        doc = await asyncio.wait_for(answer, ANSWER_TIMEOUT_S)
    except TimeoutError as exc:
        raise ApiError(504, "shadow_agent_timeout", "the shadow agent did not answer in time; retry with If-Match") from exc
    finally:
        streams.forget(request_id)
    if doc["outcome"] == "version_mismatch":
        raise ApiError(412, "version_mismatch", f"If-Match {expected} is not the current version {doc['version']}")
    if doc["outcome"] == "too_large":
        raise ApiError(413, "shadow_too_large", f"the shadow would exceed {MAX_BYTES} bytes")
    return _with_etag(_out(device_id, doc))


def _with_etag(out: ShadowOut):
    from fastapi.responses import JSONResponse

    return JSONResponse(out.model_dump(mode="json"), headers={"ETag": f'"{out.version}"'})
