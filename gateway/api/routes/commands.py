"""Commands to a device: ``POST /v1/devices/{id}/commands`` queues one, the command agent drives it
(streams/commands.py, adr/0052); reads come from the agents' state view (gateway/streams_client.py)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.api.deps import DbDep, StreamsDep, require
from gateway.auth.tokens import Principal
from gateway.crud.devices import get_device
from gateway.db.session import Database
from gateway.errors import ERROR_RESPONSES, ApiError, not_found
from schemas import codec, device_key, topics
from schemas.strict import JsonObject, Text

router = APIRouter(prefix="/devices", tags=["commands"], responses=ERROR_RESPONSES)

MAX_PARAMS_BYTES = 16 * 1024
ID_NAMESPACE = uuid.UUID("7d1c3f0e-5b7a-4f43-9a57-2f6f0c1e9b10")
Status = Literal["queued", "sent", "acknowledged", "succeeded", "failed", "timed_out", "expired"]


class CommandIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    params: JsonObject = Field(default_factory=dict)
    timeout_s: float = Field(30, gt=0, le=3600, description="wait this long for each attempt's acknowledgement")
    ttl_s: float | None = Field(None, gt=0, le=7 * 86400, description="give up (expired) after this long")
    max_attempts: int = Field(4, ge=1, le=10, description="deliveries before timed_out (retries back off 1 s, 2 s, 4 s…)")
    idempotency_key: Text | None = Field(None, min_length=1, max_length=128)
    protocol: Text | None = Field(None, max_length=16, description="mqtt (default) | modbus | opcua | coap | http")


class CommandOut(BaseModel):
    command_id: str
    device_id: str
    name: str
    params: dict[str, Any]
    status: Status
    attempt: int = 0
    max_attempts: int
    created_at: int
    updated_at: int
    expires_at: int | None = None
    idempotency_key: str | None = None
    protocol: str | None = None
    result: Any = None
    reason: str | None = None
    history: list[Annotated[list[str | int], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list, description="[status, epoch ms] pairs, oldest first")


class CommandList(BaseModel):
    data: list[CommandOut]
    count: int


def _out(st: dict) -> CommandOut:
    return CommandOut(command_id=st["command_id"], device_id=st["device_id"], name=st["name"],
                      params=json.loads(st["params_json"]), status=st["status"], attempt=st["attempt"],
                      max_attempts=st["max_attempts"], created_at=st["created_at"], updated_at=st["updated_at"],
                      expires_at=st["expires_at"], idempotency_key=st["idempotency_key"], protocol=st["protocol"],
                      result=json.loads(st["result_json"]) if st["result_json"] else None, reason=st["reason"],
                      history=[list(h) for h in json.loads(st["history_json"])])


async def _device_or_404(db: Database, tenant_id: str, device_id: str) -> None:
    def run():
        with db.tenant_tx(tenant_id) as conn:
            return get_device(conn, tenant_id=tenant_id, device_id=device_id)

    if await run_in_threadpool(run) is None:
        raise not_found(f"device {device_id!r}")


@router.post("/{device_id}/commands", status_code=202, response_model=CommandOut,
             responses={200: {"model": CommandOut, "description": "a command with this idempotency key exists: its current state"}},
             summary="Send a command; returns its id and state (200 with the existing one for a repeated idempotency key)")
async def send_command(device_id: str, body: CommandIn,
                       principal: Annotated[Principal, Depends(require("commands:write"))],
                       db: DbDep, streams: StreamsDep,
                       idempotency_key: Annotated[str | None, Header(max_length=128)] = None):
    tenant = principal.tenant_id
    await _device_or_404(db, tenant, device_id)
    params = json.dumps(body.params, separators=(",", ":"))
    if len(params) > MAX_PARAMS_BYTES:
        raise ApiError(413, "params_too_large", f"params take at most {MAX_PARAMS_BYTES} bytes of JSON")
    key = body.idempotency_key or idempotency_key
    if key:
        command_id = str(uuid.uuid5(ID_NAMESPACE, f"{tenant}:{device_id}:{key}"))
        existing = streams.command(tenant, device_id, command_id)
        if existing is not None:
            return JSONResponse(_out(existing).model_dump(mode="json"), status_code=200)
    else:
        command_id = str(uuid.uuid4())
    now = time.time_ns() // 1_000_000
    rec = {"tenant_id": tenant, "device_id": device_id, "command_id": command_id, "name": body.name,
           "params_json": params, "created_at": now, "timeout_ms": int(body.timeout_s * 1000),
           "expires_at": now + int(body.ttl_s * 1000) if body.ttl_s else None, "attempt": 0,
           "idempotency_key": key, "protocol": body.protocol, "max_attempts": body.max_attempts}
    await streams.produce(topics.COMMAND_REQUESTS.name, device_key(tenant, device_id), codec("command").encode(rec))
    return CommandOut(command_id=command_id, device_id=device_id, name=body.name, params=body.params, status="queued",
                      max_attempts=body.max_attempts, created_at=now, updated_at=now, expires_at=rec["expires_at"],
                      idempotency_key=key, protocol=body.protocol, history=[["queued", now]])


@router.get("/{device_id}/commands/{command_id}", response_model=CommandOut, summary="One command's state")
async def get_command(device_id: str, command_id: str,
                      principal: Annotated[Principal, Depends(require("devices:read"))],
                      streams: StreamsDep) -> CommandOut:
    st = streams.command(principal.tenant_id, device_id, command_id)
    if st is None:
        raise not_found(f"command {command_id!r}")
    return _out(st)


@router.get("/{device_id}/commands", response_model=CommandList, summary="A device's commands, newest first")
async def list_commands(device_id: str,
                        principal: Annotated[Principal, Depends(require("devices:read"))],
                        db: DbDep, streams: StreamsDep,
                        status: Status | None = None, name: str | None = None,
                        since: Annotated[int | None, Query(description="created at or after (epoch ms)")] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> CommandList:
    await _device_or_404(db, principal.tenant_id, device_id)
    rows = [s for s in streams.device_commands(principal.tenant_id, device_id)
            if (status is None or s["status"] == status) and (name is None or s["name"] == name)
            and (since is None or s["created_at"] >= since)]
    rows.sort(key=lambda s: s["created_at"], reverse=True)
    return CommandList(data=[_out(s) for s in rows[:limit]], count=len(rows))
