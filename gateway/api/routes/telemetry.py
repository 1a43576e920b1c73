"""Device telemetry queries. The device must belong to the token's tenant (else 404, never data)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from gateway.api.deps import require
from gateway.auth.tokens import Principal
from gateway.crud.devices import get_device
from gateway.errors import ERROR_RESPONSES, ApiError, not_found

router = APIRouter(prefix="/devices", tags=["telemetry"], responses=ERROR_RESPONSES)

MAX_LIMIT = 10_000
MAX_RANGE = dt.timedelta(days=400)


class PointOut(BaseModel):
    ts: dt.datetime
    value: float | bool | str | None


class TelemetryPage(BaseModel):
    device_id: str
    metric: str
    points: list[PointOut]
    next_cursor: str | None = None


@router.get("/{device_id}/telemetry", response_model=TelemetryPage, summary="Raw points of one metric")
async def device_telemetry(
    request: Request, device_id: str,
    principal: Annotated[Principal, Depends(require("telemetry:read"))],
    metric: Annotated[str, Query(min_length=1, max_length=128)],
    start: Annotated[dt.datetime | None, Query(alias="from")] = None,
    end: Annotated[dt.datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    cursor: str | None = None,
) -> TelemetryPage:
    now = dt.datetime.now(dt.UTC)
    end = _aware(end) if end else now + dt.timedelta(minutes=5)
    start = _aware(start) if start else end - dt.timedelta(days=1)
    if start >= end:
        raise ApiError(400, "bad_range", "'from' must be before 'to'")
    if end - start > MAX_RANGE:
        raise ApiError(400, "bad_range", f"a raw query spans at most {MAX_RANGE.days} days; use interval= for more")
    after = _decode_cursor(cursor) if cursor else None
    st = request.app.state

    def run():
        with st.db.tenant_tx(principal.tenant_id) as conn:
            if get_device(conn, tenant_id=principal.tenant_id, device_id=device_id) is None:
                return None
        return st.store.raw_points(tenant_id=principal.tenant_id, device_id=device_id, metric=metric,
                                   start=start, end=end, limit=limit, after=after)

    points = await run_in_threadpool(run)
    if points is None:
        raise not_found(f"device {device_id!r}")
    nxt = _encode_cursor(points[-1].ts) if len(points) == limit else None
    return TelemetryPage(device_id=device_id, metric=metric, points=[PointOut(ts=p.ts, value=p.value) for p in points],
                         next_cursor=nxt)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _encode_cursor(ts: dt.datetime) -> str:
    return base64.urlsafe_b64encode(ts.isoformat().encode()).decode()


def _decode_cursor(cursor: str) -> dt.datetime:
    try:
        return _aware(dt.datetime.fromisoformat(base64.urlsafe_b64decode(cursor.encode()).decode()))
    except ValueError as exc:
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned") from exc
