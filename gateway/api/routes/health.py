"""Liveness and readiness (adr/0111).

``/healthz`` (liveness): the process can still do its work, i.e. every worker thread its components started
(sinks, live hub, status updater, state view, publishers) is alive. A dead one fails it, so the local
supervisor or Kubernetes restarts the process instead of leaving it half-working.

``/readyz`` (readiness): each dependency answers now: Postgres, ClickHouse, Kafka (the partitions of the raw
telemetry topic have a leader, so ingest can be written) and, with the embedded sink, the sink has its
partitions. Every check is reported by name; the status is 503 while any fails.
"""

from __future__ import annotations

import threading
from typing import Annotated

from confluent_kafka.admin import AdminClient
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from gateway.api.deps import ClickHouseDep, ComponentsDep, DbDep, SettingsDep, SinkDep, per_app
from schemas import topics

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


def get_kafka_admin(conn: HTTPConnection, s: SettingsDep) -> AdminClient:
    """One long-lived admin client per app for the probe (it reconnects by itself), made at first use."""
    return per_app(conn, "kafka_admin", lambda: s.kafka.admin({"socket.timeout.ms": int(PROBE_TIMEOUT_S * 1000)}))


KafkaAdminDep = Annotated[AdminClient, Depends(get_kafka_admin)]


@router.get("/healthz", summary="Liveness: the process serves requests and its worker threads run")
def healthz(components: ComponentsDep):
    dead = sorted(t.name for t in _worker_threads(components) if t.ident is not None and not t.is_alive())
    if dead:
        return JSONResponse({"status": "failed", "dead_threads": dead}, status_code=503)
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Postgres, ClickHouse, Kafka and (embedded) the sink are usable")
def readyz(db: DbDep, clickhouse: ClickHouseDep, sink: SinkDep, kafka_admin: KafkaAdminDep):
    checks = {}
    try:  # a bounded wait: while Postgres is away the pool would wait its full timeout for a connection
        with db.pool.connection(timeout=PROBE_TIMEOUT_S) as conn:
            conn.execute("select 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {exc}"
    try:
        clickhouse.query_rows("SELECT 1")
        checks["clickhouse"] = "ok"
    except Exception as exc:
        checks["clickhouse"] = f"error: {exc}"
    checks["kafka"] = _kafka(kafka_admin)
    if sink is not None:
        checks["sink"] = ("dead" if not sink.is_alive() else "ok" if sink.ready.is_set() else "starting")
        checks["sink_stats"] = dict(sink.stats)
    ok = all(v == "ok" for k, v in checks.items() if k != "sink_stats")
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)


def _kafka(admin: AdminClient) -> str:
    """A metadata request for the raw telemetry topic: every partition must have a leader, or writes to it
    would wait."""
    name = topics.TELEMETRY_RAW.name
    try:
        md = admin.list_topics(name, timeout=PROBE_TIMEOUT_S).topics.get(name)
    except Exception as exc:
        return f"error: {exc}"
    if md is None or md.error is not None:
        return f"error: topic {name}: {md.error if md else 'missing'}"
    leaderless = [p for p, pm in md.partitions.items() if pm.leader < 0 or pm.error is not None]
    return f"error: partitions without a leader: {leaderless}" if leaderless else "ok"


def _worker_threads(components: list[object]) -> list[threading.Thread]:
    """The threads the gateway's components keep (each a loop meant to run as long as the process): the
    components themselves and, two levels down, the attributes of the platform's own objects."""
    found: dict[int, threading.Thread] = {}

    def walk(v, depth: int) -> None:
        if isinstance(v, threading.Thread):
            found[id(v)] = v
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x, depth)
        elif depth > 0 and type(v).__module__.split(".")[0] in ("gateway", "sinks") and hasattr(v, "__dict__"):
            for x in vars(v).values():
                walk(x, depth - 1)

    for component in components:
        walk(component, 2)
    return list(found.values())
