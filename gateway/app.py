"""The FastAPI gateway. In embedded ClickHouse mode it also hosts the telemetry sink, because chdb allows
one process per data path and the gateway must read what the sink writes (adr/0005)."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runtime.observability import instrument_fastapi
from runtime.settings import Settings
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.latest import LatestCache
from sinks.clickhouse.runner import build_sinks
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.store import TelemetryStore

from . import console, errors
from .admin import Admin
from .api import openapi
from .api.main import BODY_LIMITS, api_router, root_router
from .api.request_guard import RequestGuard
from .api.user_audit import UserActionAudit
from .auth.revocation import AuthState
from .auth.tokens import KeyRing
from .db.session import Database
from .known_devices import KnownDevices
from .live.hub import LiveHub
from .outbox import Outbox
from .status_updater import StatusUpdater
from .streams_client import StreamsClient

log = logging.getLogger(__name__)


def _reconcile_broker(admin: Admin, stop: threading.Event) -> None:
    """Postgres's cut-off identities into the broker's deny list, retried until the broker answers."""
    delay = 1.0
    while not stop.is_set():
        try:
            counts = admin.reconcile_broker_access()
            log.info("broker deny list reconciled with Postgres: %s", counts or "no access plugin")
            return
        except Exception as exc:  # the broker may still be starting; nothing else depends on this round
            log.warning("broker deny list not reconciled yet (%s); retrying in %.0fs", exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 30)


def _sweep_kafka_credentials(s: Settings, db: Database, stop: threading.Event, every_s: float = 60.0) -> None:
    """Tenant Kafka credentials a crash or a Kafka outage left half-issued or half-revoked, settled at
    start-up and then every minute (adr/0145): one indexed query when there is nothing to do."""
    from .kafka_credentials import KafkaAccess, KafkaCredentials, unavailable_reason

    if unavailable_reason(s):
        return
    creds = KafkaCredentials(s, db, KafkaAccess(s.kafka))
    while not stop.is_set():
        try:
            if settled := creds.sweep_everywhere():
                log.info("tenant Kafka credentials settled: %d", settled)
        except Exception as exc:  # Postgres or Kafka away: the next round
            log.warning("tenant Kafka credentials not swept (%s)", exc)
        stop.wait(every_s)


def create_app(s: Settings, *, run_sink: bool | None = None) -> FastAPI:
    """:param run_sink: host the ClickHouse sink in this process; default: yes when ClickHouse is chdb."""
    run_sink = s.clickhouse_embedded if run_sink is None else run_sink

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st = app.state
        st.settings = s
        st.db = Database(s.app_dsn)
        st.db.open()
        st.known_devices = KnownDevices(st.db)  # the read routes' device check without Postgres (adr/0188)
        # suspended tenants and revoked clients, refused on every request (adr/0107)
        st.auth_state = AuthState(s.app_dsn, st.db.pool).start()
        st.keys = KeyRing(s.root / "keys" / "jwt", revocation=st.auth_state)
        # control-plane records reach Kafka when their change commits (adr/0108)
        st.outbox = Outbox(st.db, s.app_dsn, s.kafka, wait_s=s.outbox_wait_s).start()
        st.admin = Admin(s, db=st.db, outbox=st.outbox)  # control plane: broker, registry topic, tenant CAs
        st.status_updater = StatusUpdater(st.admin, s.kafka, sub_devices_per_tenant=s.sub_devices_per_tenant)
        st.status_updater.start()
        st.reconcile_stop = threading.Event()
        threading.Thread(target=_reconcile_broker, args=(st.admin, st.reconcile_stop), name="broker-reconcile",
                         daemon=True).start()
        threading.Thread(target=_sweep_kafka_credentials, args=(s, st.db, st.reconcile_stop),
                         name="kafka-credentials-sweep", daemon=True).start()
        st.clickhouse = ClickHouse(s.chdb_dsn, cluster=s.clickhouse_cluster, readers=s.clickhouse_readers)
        create_all(st.clickhouse)
        # latest values from memory only where this process's own sink says what changed (adr/0185)
        st.store = TelemetryStore(st.clickhouse, latest_cache=LatestCache() if run_sink else None)
        from .ota.service import OtaService  # issue 8: artifacts, signing, campaign driver
        st.ota = OtaService(s, st.db).start()
        st.sink = None
        st.streams = StreamsClient(  # agents' state view (adr/0050), finished commands bounded (adr/0192)
            s.kafka, command_retention_s=s.gateway_command_retention_s,
            finished_per_device=s.gateway_finished_commands_per_device).start()
        st.sinks = []
        if run_sink:
            # telemetry first: /readyz reports st.sink; events, alerts and commands ride beside it
            st.sinks = build_sinks(st.clickhouse, kafka=s.kafka, group_prefix=s.sink_group_prefix,
                                   batch_size=s.sink_batch_size, batch_ms=s.sink_batch_ms,
                                   commit_delay_ms=s.sink_test_commit_delay_ms, latest=st.store.latest_cache)
            st.sink = st.sinks[0]
            for sink in st.sinks:
                sink.start()
        st.live = LiveHub(s.kafka, queue_size=s.live_queue_size, idle_after_s=s.live_idle_after_s)
        await st.live.start()
        try:
            yield
        finally:
            for sink in st.sinks:
                sink.signal_stop()
            await st.live.stop()
            for sink in st.sinks:
                sink.stop()
            st.ota.close()
            st.streams.close()
            st.status_updater.stop()
            st.reconcile_stop.set()
            st.admin.close()
            st.outbox.close()
            st.auth_state.stop()
            st.db.close()
            st.clickhouse.close()

    app = FastAPI(title="fleetstream", version="1", lifespan=lifespan,
                  description="Multi-tenant IoT platform API. Every route takes a tenant token from "
                              "`POST /v1/oauth/token`; the tenant comes from the token only.",
                  generate_unique_id_function=lambda r: f"{r.tags[0]}-{r.name}" if r.tags else r.name)
    errors.install(app)
    # NUL-free URLs and body limits before routing (adr/0109); inside the metrics middleware, so refusals count
    app.add_middleware(RequestGuard, limits=BODY_LIMITS)
    app.add_middleware(UserActionAudit)  # every change a console user makes, with their identity (adr/0162)
    openapi.install(app, BODY_LIMITS)
    instrument_fastapi(app)  # GET /metrics, request metrics, traceparent (adr/0094)
    app.include_router(root_router)
    app.include_router(api_router)
    console.install(app)  # the web console's static files at /console (adr/0163)
    return app
