"""Telemetry queries: raw points, downsampled series, latest values, and tenant-wide reads across devices
picked by type or tag. A device must belong to the token's tenant (else 404, never data).

Every answer is bounded: at most ``MAX_LIMIT`` raw points a page (cursor for more), ``MAX_BUCKETS``
buckets a series, ``MAX_DEVICES`` devices a tenant-wide read.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from gateway.api.deps import DbDep, KnownDevicesDep, StoreDep, require
from gateway.auth.tokens import Principal
from gateway.db.session import Database
from gateway.errors import ERROR_RESPONSES, ApiError, not_found
from gateway.known_devices import KnownDevices
from gateway.models.devices import DEVICE_ID_PATTERN, TAG_PATTERN
from sinks.clickhouse.store import AGGS, align

router = APIRouter(prefix="/devices", tags=["telemetry"], responses=ERROR_RESPONSES)
fleet_router = APIRouter(prefix="/telemetry", tags=["telemetry"], responses=ERROR_RESPONSES)

MAX_LIMIT = 10_000
MAX_RANGE = dt.timedelta(days=400)
MAX_BUCKETS = 50_000  # 1-minute buckets over 30 days (43,200) fit
MAX_DEVICES = 500
# what ClickHouse's DateTime64(3) holds and a reading can carry; a year-74 'to' was a 500 before (adr/0109)
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2262, 4, 11, tzinfo=dt.UTC)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

TelemetryRead = Annotated[Principal, Depends(require("telemetry:read"))]


class PointOut(BaseModel):
    ts: dt.datetime
    value: float | bool | str | None


class TelemetryPage(BaseModel):
    device_id: str
    metric: str
    points: list[PointOut]
    next_cursor: str | None = None
    interval: str | None = Field(None, description="set for downsampled reads")
    agg: str | None = None
    source: str | None = Field(None, description="telemetry (raw), telemetry_1m or telemetry_1h")


class LatestValue(BaseModel):
    ts: dt.datetime
    value: float | bool | str | None


class DeviceLatest(BaseModel):
    device_id: str
    values: dict[str, LatestValue]


class DeviceSeries(BaseModel):
    device_id: str
    points: list[PointOut]


class FleetSeries(BaseModel):
    metric: str
    interval: str
    agg: str
    source: str
    devices: list[DeviceSeries]


class FleetLatest(BaseModel):
    devices: list[DeviceLatest]


class Retention(BaseModel):
    days: int = Field(ge=1, le=3650)


def json_answer(body: dict) -> Response:
    """The answer of a read route as orjson writes it. The routes keep their ``response_model`` (the OpenAPI
    document and the schema tests use it) but build plain dicts: pydantic models of 1,000 points cost ~10x
    more CPU than the query (adr/0185). orjson writes the same JSON: UTC times with ``Z``, NaN and
    infinities as null."""
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def _points(points) -> list[dict]:
    return [{"ts": ts, "value": value} for ts, value in points]


def _latest_values(values) -> dict[str, dict]:
    return {x.metric: {"ts": x.ts, "value": x.value} for x in values}


def parse_interval(text: str) -> int:
    m = re.fullmatch(r"(\d{1,6})([smhd])", text)
    if not m or int(m.group(1)) == 0:
        raise ApiError(400, "bad_interval", f"interval {text!r} is not like 30s, 1m, 15m, 1h or 1d")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds > 31 * 86400:
        raise ApiError(400, "bad_interval", "interval is at most 31d")
    return seconds


def check_agg(agg: str) -> str:
    if agg not in AGGS:
        raise ApiError(400, "bad_agg", f"agg {agg!r} is not one of {', '.join(AGGS)}")
    return agg


def time_range(start: dt.datetime | None, end: dt.datetime | None, default: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    end = bounded(end, "to") if end else dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    start = bounded(start, "from") if start else max(EARLIEST, end - default)
    if start >= end:
        raise ApiError(400, "bad_range", "'from' must be before 'to'")
    return start, end


def bucket_range(start: dt.datetime, end: dt.datetime, interval_s: int) -> tuple[dt.datetime, dt.datetime]:
    start, end = align(start, end, interval_s)
    if (end - start).total_seconds() / interval_s > MAX_BUCKETS:
        raise ApiError(400, "too_many_buckets",
                       f"the range holds more than {MAX_BUCKETS} intervals of that size; widen interval or narrow the range")
    return start, end


@router.get("/{device_id}/telemetry", response_model=TelemetryPage,
            summary="Raw points of one metric, or downsampled with interval= and agg=")
async def device_telemetry(
    device_id: str, principal: TelemetryRead, devices: KnownDevicesDep, store: StoreDep,
    metric: Annotated[str, Query(min_length=1, max_length=128)],
    start: Annotated[dt.datetime | None, Query(alias="from")] = None,
    end: Annotated[dt.datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
    cursor: str | None = None,
    interval: Annotated[str | None, Query(description="bucket size: 30s, 1m, 15m, 1h, 1d …")] = None,
    agg: Annotated[str, Query(description="avg | min | max | sum | count | last")] = "avg",
) -> Response:
    if interval is not None:
        interval_s, agg = parse_interval(interval), check_agg(agg)
        start, end = bucket_range(*time_range(start, end, dt.timedelta(days=1)), interval_s)

        def series():
            _require_device(devices, principal.tenant_id, device_id)
            return store.downsampled(tenant_id=principal.tenant_id, device_ids=[device_id], metric=metric,
                                     start=start, end=end, interval_s=interval_s, agg=agg)[device_id]

        s = await run_in_threadpool(series)
        return json_answer({"device_id": device_id, "metric": metric, "points": _points(s.points), "next_cursor": None,
                            "interval": interval, "agg": agg, "source": s.source})

    start, end = time_range(start, end, dt.timedelta(days=1))
    if end - start > MAX_RANGE:
        raise ApiError(400, "bad_range", f"a raw query spans at most {MAX_RANGE.days} days; use interval= for more")
    after = _decode_cursor(cursor) if cursor else None

    def raw():
        _require_device(devices, principal.tenant_id, device_id)
        return store.raw_page(tenant_id=principal.tenant_id, device_id=device_id, metric=metric,
                              start=start, end=end, limit=limit, after=after)

    points = await run_in_threadpool(raw)  # times already as the answer writes them (adr/0193)
    nxt = _encode_cursor(points[-1]["ts"]) if len(points) == limit else None
    return json_answer({"device_id": device_id, "metric": metric, "points": points, "next_cursor": nxt,
                        "interval": None, "agg": None, "source": None})


@router.get("/{device_id}/telemetry/latest", response_model=DeviceLatest, summary="The last value of each metric")
async def device_latest(device_id: str, principal: TelemetryRead, devices: KnownDevicesDep,
                        store: StoreDep) -> Response:
    latest = None
    if devices.known(principal.tenant_id, device_id):  # both from memory: answered without a thread (adr/0188)
        latest = store.cached_latest(tenant_id=principal.tenant_id, device_id=device_id)
    if latest is None:
        def run():
            _require_device(devices, principal.tenant_id, device_id)
            return store.latest(tenant_id=principal.tenant_id, device_ids=[device_id])

        latest = await run_in_threadpool(run)
    return json_answer({"device_id": device_id, "values": _latest_values(latest)})


@fleet_router.get("/latest", response_model=FleetLatest, summary="Latest values of devices picked by type or tag")
async def fleet_latest(principal: TelemetryRead, db: DbDep, store: StoreDep,
                       device_type: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
                       tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None,
                       metric: Annotated[list[str] | None, Query(max_length=100)] = None) -> Response:
    def run():
        ids = select_devices(db, principal.tenant_id, device_type=device_type, tag=tag)
        return ids, store.latest(tenant_id=principal.tenant_id, device_ids=ids, metrics=metric) if ids else []

    ids, latest = await run_in_threadpool(run)
    by_device: dict[str, list] = {d: [] for d in ids}
    for x in latest:
        by_device[x.device_id].append(x)
    return json_answer({"devices": [{"device_id": d, "values": _latest_values(v)} for d, v in by_device.items()]})


@fleet_router.get("/series", response_model=FleetSeries, summary="One metric downsampled across devices picked by type or tag")
async def fleet_series(
    principal: TelemetryRead, db: DbDep, store: StoreDep,
    metric: Annotated[str, Query(min_length=1, max_length=128)],
    interval: str, agg: str = "avg",
    device_type: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None,
    start: Annotated[dt.datetime | None, Query(alias="from")] = None,
    end: Annotated[dt.datetime | None, Query(alias="to")] = None,
) -> Response:
    interval_s, agg = parse_interval(interval), check_agg(agg)
    start, end = bucket_range(*time_range(start, end, dt.timedelta(days=1)), interval_s)

    def run():
        ids = select_devices(db, principal.tenant_id, device_type=device_type, tag=tag)
        if not ids:
            return {}
        return store.downsampled(tenant_id=principal.tenant_id, device_ids=ids, metric=metric, start=start,
                                 end=end, interval_s=interval_s, agg=agg)

    series = await run_in_threadpool(run)
    source = next(iter(series.values())).source if series else "telemetry"
    return json_answer({"metric": metric, "interval": interval, "agg": agg, "source": source,
                        "devices": [{"device_id": d, "points": _points(s.points)} for d, s in series.items()]})


@fleet_router.get("/retention", response_model=Retention, summary="How long this tenant's raw telemetry is kept")
async def get_retention(principal: TelemetryRead, store: StoreDep) -> Retention:
    days = await run_in_threadpool(store.retention, tenant_id=principal.tenant_id)
    return Retention(days=days or 365)


@fleet_router.put("/retention", response_model=Retention,
                  summary="Set raw retention in days (rows written from now on; hourly rollups keep 4x as long)")
async def put_retention(body: Retention, principal: Annotated[Principal, Depends(require("devices:write"))],
                        store: StoreDep) -> Retention:
    await run_in_threadpool(store.set_retention, tenant_id=principal.tenant_id, days=body.days)
    return body


def select_devices(db: Database, tenant_id: str, *, device_type: str | None, tag: str | None) -> list[str]:
    """Device ids of the tenant (RLS-scoped transaction) with that type and/or tag, at most MAX_DEVICES."""
    if device_type is None and tag is None:
        raise ApiError(400, "selector_required", "pick devices with device_type= and/or tag=")
    with db.tenant_tx(tenant_id) as conn:
        rows = conn.execute(
            "select device_id from devices where tenant_id = %s and (%s::text is null or device_type = %s) "
            "and (%s::text is null or tags @> array[%s]::text[]) order by device_id limit %s",
            (tenant_id, device_type, device_type, tag, tag, MAX_DEVICES + 1)).fetchall()
    if len(rows) > MAX_DEVICES:
        raise ApiError(400, "too_many_devices", f"the selector matches more than {MAX_DEVICES} devices; narrow it")
    return [r["device_id"] for r in rows]


def _require_device(devices: KnownDevices, tenant_id: str, device_id: str) -> None:
    if not devices.exists(tenant_id, device_id):
        raise not_found(f"device {device_id!r}")


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def bounded(t: dt.datetime, name: str) -> dt.datetime:
    """``t`` (UTC when it names no zone) if it lies in [EARLIEST, LATEST), else a 400 naming the bounds."""
    t = _aware(t)
    try:
        ok = EARLIEST <= t < LATEST
    except OverflowError:  # year 1 with a negative offset cannot even be compared
        ok = False
    if not ok:
        raise ApiError(400, "bad_time", f"'{name}' must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}")
    return t


def _encode_cursor(ts: str) -> str:
    """The cursor after a point, from its time as the answer writes it (``…Z``): the time's isoformat
    (``…+00:00``), as cursors always were, so cursors handed out before adr/0193 still work."""
    return base64.urlsafe_b64encode((ts.removesuffix("Z") + "+00:00").encode()).decode()


def _decode_cursor(cursor: str) -> dt.datetime:
    try:
        return bounded(dt.datetime.fromisoformat(base64.urlsafe_b64decode(cursor.encode()).decode()), "cursor")
    except ValueError as exc:
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned") from exc
    except ApiError as exc:
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned") from exc
