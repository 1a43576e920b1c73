"""GraphQL at ``/graphql`` (strawberry): devices with their latest values, telemetry series, shadow,
commands and alerts; mutations for desired state, commands and alert acknowledgement; live telemetry subscriptions over the
graphql-transport-ws protocol (adr/0064).

Same tokens and scopes as REST: ``Authorization: Bearer`` on HTTP; on WebSocket the token goes in the
``connection_init`` payload (``{"Authorization": "Bearer …"}`` or ``{"token": …}``) or as ``?access_token=``,
and a connection without a valid one is closed with 4403. Every resolver reads through the same tenant-
requiring layers as REST (``tenant_tx`` for Postgres, ``TelemetryStore`` for ClickHouse), which the context
getter takes from the same typed dependencies as REST (adr/0124); mutations call the REST handlers themselves,
so validation and errors are the same.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from fastapi.concurrency import run_in_threadpool
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.scalars import JSON
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import Info

from gateway.api.deps import DbDep, HubDep, KeysDep, StoreDep, StreamsDep
from gateway.auth.tokens import Principal, TokenError
from gateway.crud.devices import get_device
from gateway.errors import ApiError
from gateway.live.auth import bearer
from gateway.live.hub import Subscriber
from schemas.strict import check_text

from . import telemetry as rest

MAX_DEVICES = 500


class GraphQLApiError(Exception):
    """Carries the REST error code into the GraphQL error's extensions."""

    def __init__(self, exc: ApiError):
        super().__init__(exc.message)
        self.extensions = {"code": exc.code, "status": exc.status}


def _token(ctx: dict) -> str | None:
    req = ctx["request"]
    params = ctx.get("connection_params") or {}
    return (bearer(req.headers.get("authorization")) or req.query_params.get("access_token")
            or params.get("token") or bearer(params.get("Authorization") or params.get("authorization")))


def _principal(info: Info, scope: str) -> Principal:
    ctx = info.context
    p = ctx.get("principal")
    if p is None:
        token = _token(ctx)
        if not token:
            raise GraphQLApiError(ApiError(401, "unauthenticated", "a Bearer token is required"))
        try:
            p = ctx["keys"].verify(token)
        except TokenError as exc:
            raise GraphQLApiError(ApiError(401, "invalid_token", f"token rejected: {exc}")) from exc
        ctx["principal"] = p
    if scope not in p.scopes or not p.tenant_id:
        raise GraphQLApiError(ApiError(403, "insufficient_scope", f"this field needs the {scope} scope"))
    return p


def _text(**args: str | None) -> None:
    """The REST models' text rule for arguments that reach Postgres or ClickHouse (adr/0109)."""
    for name, value in args.items():
        try:
            check_text(value) if value is not None else None
        except ValueError as exc:
            raise GraphQLApiError(ApiError(400, "invalid_request", f"{name}: {exc}")) from None


async def _call(fn, *args, **kw):
    try:
        return await run_in_threadpool(fn, *args, **kw)
    except ApiError as exc:
        raise GraphQLApiError(exc) from exc


@strawberry.type
class MetricValue:
    metric: str
    ts: dt.datetime
    value: JSON | None


@strawberry.type
class Point:
    ts: dt.datetime
    value: JSON | None


@strawberry.type
class Alert:
    alert_id: str
    rule_id: str
    severity: str
    state: str
    time: dt.datetime
    message: str


@strawberry.type
class Device:
    id: str
    device_type: str | None
    tags: list[str]
    status: str

    @strawberry.field(description="The last value of each metric")
    async def latest(self, info: Info) -> list[MetricValue]:
        p = _principal(info, "telemetry:read")
        rows = await _call(info.context["store"].latest, tenant_id=p.tenant_id, device_ids=[self.id])
        return [MetricValue(metric=r.metric, ts=r.ts, value=r.value) for r in rows]

    @strawberry.field(description="Raw points, or buckets with interval (30s, 1m, 1h …) and agg")
    async def telemetry(self, info: Info, metric: str,
                        from_: Annotated[dt.datetime | None, strawberry.argument(name="from")] = None,
                        to: dt.datetime | None = None, interval: str | None = None, agg: str = "avg",
                        limit: int = 1000) -> list[Point]:
        p = _principal(info, "telemetry:read")
        _text(metric=metric, interval=interval, agg=agg)
        store = info.context["store"]
        try:
            start, end = rest.time_range(from_, to, dt.timedelta(days=1))
            if interval is not None:
                interval_s, agg = rest.parse_interval(interval), rest.check_agg(agg)
                start, end = rest.bucket_range(start, end, interval_s)
                series = await _call(store.downsampled, tenant_id=p.tenant_id, device_ids=[self.id], metric=metric,
                                     start=start, end=end, interval_s=interval_s, agg=agg)
                points = series[self.id].points
            else:
                if not 1 <= limit <= rest.MAX_LIMIT or end - start > rest.MAX_RANGE:
                    raise ApiError(400, "bad_range", f"limit is 1..{rest.MAX_LIMIT}; a raw range at most "
                                                     f"{rest.MAX_RANGE.days} days")
                points = await _call(store.raw_points, tenant_id=p.tenant_id, device_id=self.id, metric=metric,
                                     start=start, end=end, limit=limit)
        except ApiError as exc:
            raise GraphQLApiError(exc) from exc
        return [Point(ts=x.ts, value=x.value) for x in points]

    @strawberry.field(description="The shadow document (desired, reported, delta, version)")
    def shadow(self, info: Info) -> JSON | None:
        p = _principal(info, "devices:read")
        doc = info.context["streams"].shadow(p.tenant_id, self.id)
        if doc is None:
            return None
        return {"version": doc["version"], "desired": json.loads(doc["desired_json"]),
                "reported": json.loads(doc["reported_json"]), "delta": json.loads(doc["delta_json"])}

    @strawberry.field(description="Commands and their states, newest first")
    def commands(self, info: Info, limit: int = 20) -> list[JSON]:
        p = _principal(info, "devices:read")
        rows = sorted(info.context["streams"].device_commands(p.tenant_id, self.id),
                      key=lambda s: s["created_at"], reverse=True)
        return [{"command_id": s["command_id"], "name": s["name"], "status": s["status"],
                 "created_at": s["created_at"], "updated_at": s["updated_at"]} for s in rows[:max(1, min(limit, 1000))]]

    @strawberry.field(description="Alert history, newest first (from ClickHouse)")
    async def alerts(self, info: Info, limit: int = 20) -> list[Alert]:
        p = _principal(info, "telemetry:read")
        rows = await _call(info.context["store"].alerts, tenant_id=p.tenant_id, device_id=self.id,
                           limit=max(1, min(limit, 1000)))
        return [Alert(alert_id=r["alert_id"], rule_id=r["rule_id"], severity=r["severity"], state=r["state"],
                      time=r["time"], message=r["message"]) for r in rows]


def _device(row: dict) -> Device:
    return Device(id=row["device_id"], device_type=row.get("device_type"), tags=list(row.get("tags") or []),
                  status=row.get("status", ""))


@strawberry.type
class Query:
    @strawberry.field(description="One device of the token's tenant (null if it has no such device)")
    async def device(self, info: Info, id: str) -> Device | None:
        p = _principal(info, "devices:read")
        _text(id=id)
        db = info.context["db"]

        def run():
            with db.tenant_tx(p.tenant_id) as conn:
                return get_device(conn, tenant_id=p.tenant_id, device_id=id)

        row = await _call(run)
        return _device(row) if row else None

    @strawberry.field(description="The tenant's devices, optionally by type and/or tag (at most 500)")
    async def devices(self, info: Info, device_type: str | None = None, tag: str | None = None,
                      limit: int = 100) -> list[Device]:
        p = _principal(info, "devices:read")
        _text(device_type=device_type, tag=tag)
        db = info.context["db"]
        n = max(1, min(limit, MAX_DEVICES))

        def run():
            with db.tenant_tx(p.tenant_id) as conn:
                return conn.execute(
                    "select device_id, device_type, tags, status from devices where tenant_id = %s "
                    "and (%s::text is null or device_type = %s) and (%s::text is null or tags @> array[%s]::text[]) "
                    "order by device_id limit %s", (p.tenant_id, device_type, device_type, tag, tag, n)).fetchall()

        return [_device(r) for r in await _call(run)]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Merge into the desired state (null deletes a key); same as PATCH …/shadow/desired")
    async def set_desired(self, info: Info, device_id: str, state: JSON, if_match: int | None = None) -> JSON:
        from . import shadow

        p, ctx = _principal(info, "devices:write"), info.context
        try:
            resp = await shadow.patch_desired(device_id, state, p, db=ctx["db"], streams=ctx["streams"],
                                              if_match=None if if_match is None else str(if_match))
        except ApiError as exc:
            raise GraphQLApiError(exc) from exc
        return json.loads(resp.body)

    @strawberry.mutation(description="Send a command; same as POST …/commands")
    async def send_command(self, info: Info, device_id: str, name: str, params: JSON | None = None,
                           idempotency_key: str | None = None) -> JSON:
        from pydantic import ValidationError

        from . import commands

        p, ctx = _principal(info, "commands:write"), info.context
        try:
            body = commands.CommandIn(name=name, params=params or {}, idempotency_key=idempotency_key)
            out = await commands.send_command(device_id, body, p, db=ctx["db"], streams=ctx["streams"],
                                              idempotency_key=None)
        except ValidationError as exc:
            raise GraphQLApiError(ApiError(400, "invalid_request", str(exc.errors()[0]["msg"]))) from exc
        except ApiError as exc:
            raise GraphQLApiError(exc) from exc
        return json.loads(out.body) if hasattr(out, "body") else out.model_dump(mode="json")


    @strawberry.mutation(description="Acknowledge an active alert; same as POST /v1/alerts/{id}/acknowledge")
    async def acknowledge_alert(self, info: Info, alert_id: str) -> JSON:
        from . import alerts

        p = _principal(info, "rules:write")
        try:
            out = await alerts.acknowledge_alert(alert_id, p, streams=info.context["streams"])
        except ApiError as exc:
            raise GraphQLApiError(exc) from exc
        return out.model_dump(mode="json")


@strawberry.type
class TelemetryEvent:
    device_id: str
    ts: dt.datetime
    values: JSON


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Live telemetry of the tenant's devices (all, or the ids given)")
    async def telemetry(self, info: Info, device_ids: list[str] | None = None,
                        metrics: list[str] | None = None) -> AsyncGenerator[TelemetryEvent, None]:
        p = _principal(info, "telemetry:read")
        hub = info.context["hub"]
        devices, wanted = (set(device_ids) if device_ids is not None else None), set(metrics or ())

        def matches(ev) -> bool:
            return (ev.kind == "telemetry" and (devices is None or ev.device_id in devices)
                    and (not wanted or not wanted.isdisjoint(ev.record["values"])))

        sub = hub.subscribe(Subscriber(p.tenant_id, matches, maxsize=hub.queue_size))
        try:
            await hub.live()
            while True:
                for ev in await sub.next_batch():
                    values = ev.record["values"]
                    yield TelemetryEvent(device_id=ev.device_id,
                                         ts=dt.datetime.fromtimestamp(ev.record["event_time"] / 1000, dt.UTC),
                                         values={k: v for k, v in values.items() if not wanted or k in wanted})
        finally:
            hub.unsubscribe(sub)


class _Router(GraphQLRouter):
    async def on_ws_connect(self, context):
        """Refuses a subscription connection without a valid tenant token before any operation runs."""
        token = _token(context)
        try:
            p = context["keys"].verify(token or "")
        except TokenError as exc:
            raise ConnectionRejectionError({"code": "invalid_token"}) from exc
        context["principal"] = p
        return await super().on_ws_connect(context)


async def _context(keys: KeysDep, db: DbDep, store: StoreDep, streams: StreamsDep, hub: HubDep) -> dict:
    """``info.context`` of every operation, HTTP or WebSocket: the REST dependencies by name (strawberry adds
    ``request``, ``response`` and, on WebSocket, ``connection_params``; ``_principal`` adds ``principal``)."""
    return {"keys": keys, "db": db, "store": store, "streams": streams, "hub": hub}


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
router = _Router(schema, context_getter=_context, subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL])
# What strawberry answers besides GraphQL JSON, in the OpenAPI document: GET without a query serves the GraphiQL
# page, and a request it cannot read (wrong content type, bad JSON) gets a plain-text 400.
for _route in router.routes:
    if not hasattr(_route, "responses"):
        continue
    if "GET" in _route.methods and 200 in _route.responses:
        _route.responses[200]["content"] = {"text/html": {"schema": {"type": "string"}}}
    _route.responses[400] = {"description": "the request is not a GraphQL request this server can read", "content": {
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
