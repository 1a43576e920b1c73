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

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from schemas import topics

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


@router.get("/healthz", summary="Liveness: the process serves requests and its worker threads run")
def healthz(request: Request):
    dead = sorted(t.name for t in _worker_threads(request.app.state) if t.ident is not None and not t.is_alive())
    if dead:
        return JSONResponse({"status": "failed", "dead_threads": dead}, status_code=503)
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Postgres, ClickHouse, Kafka and (embedded) the sink are usable")
def readyz(request: Request):
    st = request.app.state
    checks = {}
    try:  # a bounded wait: while Postgres is away the pool would wait its full timeout for a connection
        with st.db.pool.connection(timeout=PROBE_TIMEOUT_S) as conn:
            conn.execute("select 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {exc}"
    try:
        st.clickhouse.query_rows("SELECT 1")
        checks["clickhouse"] = "ok"
    except Exception as exc:
        checks["clickhouse"] = f"error: {exc}"
    checks["kafka"] = _kafka(st)
    if st.sink is not None:
        checks["sink"] = ("dead" if not st.sink.is_alive() else "ok" if st.sink.ready.is_set() else "starting")
        checks["sink_stats"] = dict(st.sink.stats)
    ok = all(v == "ok" for k, v in checks.items() if k != "sink_stats")
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)


def _kafka(st) -> str:
    """A metadata request for the raw telemetry topic on one long-lived admin client (it reconnects by
    itself): every partition must have a leader, or writes to it would wait."""
    admin = getattr(st, "kafka_admin", None)
    if admin is None:
        admin = st.kafka_admin = st.settings.kafka.admin({"socket.timeout.ms": int(PROBE_TIMEOUT_S * 1000)})
    name = topics.TELEMETRY_RAW.name
    try:
        md = admin.list_topics(name, timeout=PROBE_TIMEOUT_S).topics.get(name)
    except Exception as exc:
        return f"error: {exc}"
    if md is None or md.error is not None:
        return f"error: topic {name}: {md.error if md else 'missing'}"
    leaderless = [p for p, pm in md.partitions.items() if pm.leader < 0 or pm.error is not None]
    return f"error: partitions without a leader: {leaderless}" if leaderless else "ok"


def _worker_threads(st) -> list[threading.Thread]:
    """The threads the gateway's components keep (each a loop meant to run as long as the process): found
    in the app state and, two levels down, in the attributes of the platform's own objects."""
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

    for component in list(vars(st).get("_state", {}).values()):
        walk(component, 2)
    return list(found.values())
