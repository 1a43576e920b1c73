"""Alerts raised by the rules agent: ``GET /v1/alerts`` (filters), acknowledge and clear (adr/0056).

Alerts live on ``fleetstream.alerts`` (Avro ``Alert``, one record per state change, key ``tenant:device``);
the gateway's view (gateway/streams_client.py) keeps the latest state per alert and never moves an alert
backwards (ACTIVE → ACKNOWLEDGED → CLEARED). Acknowledging or clearing writes the next record."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from gateway.api.deps import StreamsDep, require
from gateway.auth.tokens import Principal
from gateway.errors import ERROR_RESPONSES, ApiError, documented, not_found
from gateway.streams_client import StreamsClient
from schemas import codec, device_key, topics

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERROR_RESPONSES)
State = Literal["ACTIVE", "ACKNOWLEDGED", "CLEARED"]
Severity = Literal["INFO", "WARNING", "MINOR", "MAJOR", "CRITICAL"]
RANK = {"ACTIVE": 0, "ACKNOWLEDGED": 1, "CLEARED": 2}


class AlertOut(BaseModel):
    alert_id: str
    rule_id: str
    device_id: str
    severity: Severity
    state: State
    time: int
    message: str
    details: dict[str, Any]


class AlertList(BaseModel):
    data: list[AlertOut]
    count: int


def _out(a: dict) -> AlertOut:
    return AlertOut(alert_id=a["alert_id"], rule_id=a["rule_id"], device_id=a["device_id"], severity=a["severity"],
                    state=a["state"], time=a["time"], message=a["message"], details=json.loads(a["details_json"]))


@router.get("", response_model=AlertList, summary="The tenant's alerts, newest first")
async def list_alerts(principal: Annotated[Principal, Depends(require("devices:read"))], streams: StreamsDep,
                      state: State | None = None, severity: Severity | None = None, device_id: str | None = None,
                      rule_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AlertList:
    rows = [a for a in streams.tenant_alerts(principal.tenant_id)
            if (state is None or a["state"] == state) and (severity is None or a["severity"] == severity)
            and (device_id is None or a["device_id"] == device_id) and (rule_id is None or a["rule_id"] == rule_id)]
    rows.sort(key=lambda a: a["time"], reverse=True)
    return AlertList(data=[_out(a) for a in rows[:limit]], count=len(rows))


@router.get("/{alert_id}", response_model=AlertOut, summary="One alert")
async def get_alert(alert_id: str, principal: Annotated[Principal, Depends(require("devices:read"))],
                    streams: StreamsDep) -> AlertOut:
    a = streams.alert(principal.tenant_id, alert_id)
    if a is None:
        raise not_found(f"alert {alert_id!r}")
    return _out(a)


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, summary="Acknowledge an active alert",
             responses=documented({409: "the alert is already acknowledged or cleared"}))
async def acknowledge_alert(alert_id: str, principal: Annotated[Principal, Depends(require("rules:write"))],
                            streams: StreamsDep) -> AlertOut:
    return await _move(streams, principal.tenant_id, alert_id, "ACKNOWLEDGED")


@router.post("/{alert_id}/clear", response_model=AlertOut, summary="Clear an alert",
             responses=documented({409: "the alert is already cleared"}))
async def clear_alert(alert_id: str, principal: Annotated[Principal, Depends(require("rules:write"))],
                      streams: StreamsDep) -> AlertOut:
    return await _move(streams, principal.tenant_id, alert_id, "CLEARED")


async def _move(streams: StreamsClient, tenant_id: str, alert_id: str, state: str) -> AlertOut:
    a = streams.alert(tenant_id, alert_id)
    if a is None:
        raise not_found(f"alert {alert_id!r}")
    if RANK[a["state"]] >= RANK[state]:
        raise ApiError(409, "alert_state", f"alert is already {a['state']}")
    rec = {**a, "state": state, "time": time.time_ns() // 1_000_000}
    value = codec("alert").encode(rec)
    await streams.produce(topics.ALERTS.name, device_key(tenant_id, a["device_id"]), value)
    streams.apply_alert(rec, value)
    return _out(rec)
