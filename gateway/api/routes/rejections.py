"""Why data was refused: ``GET /v1/devices/{id}/rejections`` and the tenant-wide ``GET /v1/rejections``
(adr/0180). Rows come from the dead-letter topic through the ClickHouse sink (``rejections`` table), newest
first, with the reason, the stage that refused and a bounded sample of the payload; ``counts`` sums them per
reason code over everything kept (14 days). The tenant comes only from the token; another tenant's device is
a 404."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from gateway.api.deps import DbDep, DevicesRead, StoreDep
from gateway.crud.devices import get_device
from gateway.errors import ERROR_RESPONSES, ApiError, not_found
from sinks.clickhouse.rows import REJECTION_SAMPLE_BYTES

device_router = APIRouter(prefix="/devices", tags=["rejections"], responses=ERROR_RESPONSES)
router = APIRouter(prefix="/rejections", tags=["rejections"], responses=ERROR_RESPONSES)

MAX_LIMIT = 1000
ReasonCode = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$",
                                         description="only this reason code, e.g. invalid_json, metric_type")]


class Rejection(BaseModel):
    time: dt.datetime
    device_id: str | None
    source: str = Field(description="the stage that refused: mqtt, coap, http, modbus, opcua, streams.validate …")
    reason_code: str = Field(description="stable machine code (adr/0103, adr/0182)")
    reason: str
    origin: str | None = Field(None, description="where it arrived, e.g. the MQTT topic")
    payload_sample: str = Field(description=f"the first {REJECTION_SAMPLE_BYTES} bytes of the refused payload as "
                                            "UTF-8 (bytes that are not UTF-8 as \\xNN escapes)")
    payload_size: int = Field(description="bytes the dead letter kept (up to 256 KiB; the reason names a bigger "
                                          "original size)")
    payload_truncated: bool


class RejectionPage(BaseModel):
    data: list[Rejection]
    counts: dict[str, int] = Field(description="refusals per reason code over the 14 days kept (the same filter, "
                                               "without the page)")
    next_cursor: str | None = None


def _encode_cursor(row: dict) -> str:
    return base64.urlsafe_b64encode(f"{row['time_ms']}.{row['kafka_partition']}.{row['kafka_offset']}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, int, int]:
    try:
        t, p, o = base64.urlsafe_b64decode(cursor.encode()).decode().split(".")
        return int(t), int(p), int(o)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned") from exc


def _out(r: dict) -> Rejection:
    sample = r["raw_sample"]
    return Rejection(time=dt.datetime.fromtimestamp(r["time_ms"] / 1000, dt.UTC), device_id=r["device_id"] or None,
                     source=r["source"], reason_code=r["reason_code"], reason=r["reason"], origin=r["origin"],
                     payload_sample=sample.decode("utf-8", "backslashreplace"), payload_size=r["raw_size"],
                     payload_truncated=r["raw_size"] > len(sample))


def _page(store, tenant_id: str, device_id: str | None, reason_code: str | None, limit: int,
          cursor: str | None) -> RejectionPage:
    before = _decode_cursor(cursor) if cursor else None
    rows = store.rejections(tenant_id=tenant_id, device_id=device_id, reason_code=reason_code, limit=limit,
                            before=before)
    counts = store.rejection_counts(tenant_id=tenant_id, device_id=device_id)
    if reason_code is not None:
        counts = {k: v for k, v in counts.items() if k == reason_code}
    nxt = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return RejectionPage(data=[_out(r) for r in rows], counts=counts, next_cursor=nxt)


@device_router.get("/{device_id}/rejections", response_model=RejectionPage,
                   summary="Input of this device the platform refused, newest first, with the reason")
async def device_rejections(device_id: str, principal: DevicesRead, db: DbDep, store: StoreDep,
                            reason_code: ReasonCode = None,
                            limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
                            cursor: str | None = None) -> RejectionPage:
    def run() -> RejectionPage:
        with db.tenant_tx(principal.tenant_id) as conn:
            if get_device(conn, tenant_id=principal.tenant_id, device_id=device_id) is None:
                raise not_found(f"device {device_id!r}")
        return _page(store, principal.tenant_id, device_id, reason_code, limit, cursor)

    return await run_in_threadpool(run)


@router.get("", response_model=RejectionPage, summary="Input of the tenant the platform refused, newest first")
async def tenant_rejections(principal: DevicesRead, store: StoreDep, reason_code: ReasonCode = None,
                            device_id: Annotated[str | None, Query(max_length=200)] = None,
                            limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
                            cursor: str | None = None) -> RejectionPage:
    return await run_in_threadpool(_page, store, principal.tenant_id, device_id, reason_code, limit, cursor)
