"""The FastAPI gateway. In embedded ClickHouse mode it also hosts the telemetry sink, because chdb allows
one process per data path and the gateway must read what the sink writes (adr/0005)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fleetstream.settings import Settings
from schemas import topics
from sinks.base import BatchingSink
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseTelemetrySink
from sinks.clickhouse.store import TelemetryStore

from . import errors
from .api.main import api_router, root_router
from .auth.tokens import KeyRing
from .db.session import Database

log = logging.getLogger(__name__)


def create_app(s: Settings, *, run_sink: bool | None = None) -> FastAPI:
    """:param run_sink: host the ClickHouse sink in this process; default: yes when ClickHouse is chdb."""
    run_sink = s.clickhouse_embedded if run_sink is None else run_sink

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st = app.state
        st.settings = s
        st.db = Database(s.app_dsn)
        st.db.open()
        st.keys = KeyRing(s.root / "keys" / "jwt")
        st.clickhouse = ClickHouse(s.chdb_dsn)
        create_all(st.clickhouse)
        st.store = TelemetryStore(st.clickhouse)
        from .ota.service import OtaService  # issue 8: artifacts, signing, campaign driver
        st.ota = OtaService(s, st.db).start()
        st.sink = None
        if run_sink:
            st.sink = BatchingSink(ClickHouseTelemetrySink(st.clickhouse), bootstrap=s.bootstrap_servers,
                                   topic=topics.TELEMETRY.name, record="telemetry", group_id="fleetstream-sink-clickhouse",
                                   batch_size=s.sink_batch_size, batch_ms=s.sink_batch_ms)
            st.sink.start()
        try:
            yield
        finally:
            if st.sink is not None:
                st.sink.stop()
            st.ota.close()
            st.db.close()
            st.clickhouse.close()

    app = FastAPI(title="fleetstream", version="1", lifespan=lifespan,
                  description="Multi-tenant IoT platform API. Every route takes a tenant token from "
                              "`POST /v1/oauth/token`; the tenant comes from the token only.",
                  generate_unique_id_function=lambda r: f"{r.tags[0]}-{r.name}" if r.tags else r.name)
    errors.install(app)
    app.include_router(root_router)
    app.include_router(api_router)
    return app
