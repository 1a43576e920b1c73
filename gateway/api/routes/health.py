from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Postgres, ClickHouse and (embedded) the sink are usable")
def readyz(request: Request):
    st = request.app.state
    checks = {}
    try:
        with st.db.anonymous_tx() as conn:
            conn.execute("select 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {exc}"
    try:
        st.clickhouse.query_rows("SELECT 1")
        checks["clickhouse"] = "ok"
    except Exception as exc:
        checks["clickhouse"] = f"error: {exc}"
    if st.sink is not None:
        checks["sink"] = "ok" if st.sink.is_alive() and st.sink.ready.is_set() else "starting"
        checks["sink_stats"] = dict(st.sink.stats)
    ok = all(v == "ok" for k, v in checks.items() if k != "sink_stats")
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)
