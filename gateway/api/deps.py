"""Route dependencies: everything a handler uses arrives as a typed parameter (adr/0124).

The tenant comes only from the verified token, never from path, query or body (``PrincipalDep`` and the
scope guards). The gateway's components are created once by the lifespan in gateway/app.py and kept in the
app state; this module is the only code that reads them there. A handler names what it touches in its
signature (``db: DbDep, store: StoreDep``), and a test swaps one with
``app.dependency_overrides[get_store] = lambda: fake``.

Every accessor takes the bare ``HTTPConnection``, so it serves REST, SSE and WebSocket routes alike and adds
no parameter to the OpenAPI document. Accessors are ``async`` so FastAPI runs them on the event loop: a
plain ``def`` dependency would cost a thread-pool hop per request for one attribute read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection, Request

from gateway.admin import Admin
from gateway.auth.revocation import TokenRevoked
from gateway.auth.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_ok
from gateway.auth.tokens import PLATFORM_SCOPE, KeyRing, Principal, TokenError
from gateway.broker.emqx import DeviceStatusCache, authorize
from gateway.crud import devices as devices_crud
from gateway.db.session import Database
from gateway.errors import ApiError
from gateway.http_ingest import IngestService
from gateway.kafka_credentials import KafkaAccess, KafkaCredentials
from gateway.kafka_export import ExportTopics, KafkaExport
from gateway.known_devices import KnownDevices
from gateway.live.hub import LiveHub
from gateway.ota.service import OtaService
from gateway.outbox import Outbox
from gateway.streams_client import StreamsClient
from runtime.pki import PlatformPKI
from runtime.settings import Settings
from sinks.base import BatchingSink
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.store import TelemetryStore

T = TypeVar("T")


# -- the components the lifespan creates --------------------------------------------------------------------
async def get_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


async def get_db(conn: HTTPConnection) -> Database:
    """The application-role Postgres pool; tenant data only through ``db.tenant_tx(tenant_id)`` (RLS)."""
    return conn.app.state.db


async def get_known_devices(conn: HTTPConnection) -> KnownDevices:
    """Devices of a tenant found in Postgres, remembered (adr/0188)."""
    return conn.app.state.known_devices


async def get_keys(conn: HTTPConnection) -> KeyRing:
    """Token signing and verification keys (verification refuses suspended tenants, revoked clients)."""
    return conn.app.state.keys


async def get_admin(conn: HTTPConnection) -> Admin:
    """Control-plane operations: Postgres, broker and registry topic together."""
    return conn.app.state.admin


async def get_pki(admin: Annotated[Admin, Depends(get_admin)]) -> PlatformPKI:
    """The platform root CA whose certificate goes out with every device certificate."""
    return admin.pki


async def get_outbox(conn: HTTPConnection) -> Outbox:
    """The transactional outbox's relay, to wait until Kafka has what a transaction wrote (adr/0108)."""
    return conn.app.state.outbox


async def get_clickhouse(conn: HTTPConnection) -> ClickHouse:
    return conn.app.state.clickhouse


async def get_store(conn: HTTPConnection) -> TelemetryStore:
    """Tenant-scoped telemetry reads from ClickHouse."""
    return conn.app.state.store


async def get_sink(conn: HTTPConnection) -> BatchingSink | None:
    """The embedded telemetry sink, or None when this gateway does not host one."""
    return conn.app.state.sink


async def get_streams(conn: HTTPConnection) -> StreamsClient:
    """The agents' state view (commands, shadows, alerts) and a producer to their topics (adr/0050)."""
    return conn.app.state.streams


async def get_ota(conn: HTTPConnection) -> OtaService:
    return conn.app.state.ota


async def get_hub(conn: HTTPConnection) -> LiveHub:
    """The process's one live-delivery consumer (adr/0063)."""
    return conn.app.state.live


async def get_components(conn: HTTPConnection) -> list[object]:
    """Every component in the app state, for liveness: their worker threads must all be running."""
    return list(vars(conn.app.state).get("_state", {}).values())


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
KnownDevicesDep = Annotated[KnownDevices, Depends(get_known_devices)]
KeysDep = Annotated[KeyRing, Depends(get_keys)]
AdminDep = Annotated[Admin, Depends(get_admin)]
PKIDep = Annotated[PlatformPKI, Depends(get_pki)]
OutboxDep = Annotated[Outbox, Depends(get_outbox)]
ClickHouseDep = Annotated[ClickHouse, Depends(get_clickhouse)]
StoreDep = Annotated[TelemetryStore, Depends(get_store)]
SinkDep = Annotated[BatchingSink | None, Depends(get_sink)]
StreamsDep = Annotated[StreamsClient, Depends(get_streams)]
OtaDep = Annotated[OtaService, Depends(get_ota)]
HubDep = Annotated[LiveHub, Depends(get_hub)]
ComponentsDep = Annotated[list[object], Depends(get_components)]

_per_app_lock = threading.Lock()


def per_app(conn: HTTPConnection, name: str, build: Callable[[], T]) -> T:
    """The app's one ``name``, made by ``build()`` the first time a route asks (once, under a lock) and kept
    in the app state with the lifespan's components, so liveness sees its threads too. For clients nobody
    should pay for until they are used: the readiness probe's Kafka admin client, the HTTP ingest service."""
    st = conn.app.state
    value = getattr(st, name, None)
    if value is None:
        with _per_app_lock:
            value = getattr(st, name, None)
            if value is None:
                value = build()
                setattr(st, name, value)
    return value


async def get_ingest(conn: HTTPConnection) -> IngestService:
    """Devices' HTTP ingest, made at the first ``POST /v1/ingest``. Built from the state directly rather than
    from the accessors above: sub-dependencies would be resolved on every request of this hot route."""
    st = conn.app.state
    return per_app(conn, "ingest", lambda: IngestService(st.settings, st.db, st.admin, st.auth_state))


IngestDep = Annotated[IngestService, Depends(get_ingest)]


async def get_broker_authz(conn: HTTPConnection) -> Callable[[dict], str]:
    """EMQX's authorization hook (adr/0139): tenant status from the revocation cache, device status from
    Postgres behind a short cache; made at the first call."""
    st = conn.app.state

    def build() -> Callable[[dict], str]:
        def lookup(tenant_id: str, device_id: str) -> str | None:
            with st.db.tenant_tx(tenant_id) as c:
                row = devices_crud.get_device(c, tenant_id=tenant_id, device_id=device_id)
            return row["status"] if row else None

        cut = DeviceStatusCache(lookup)
        return lambda req: authorize(req, tenant_refused=st.auth_state.tenant_refused, device_cut=cut)

    return per_app(conn, "broker_authz", build)


BrokerAuthzDep = Annotated[Callable[[dict], str], Depends(get_broker_authz)]


async def get_kafka_credentials(conn: HTTPConnection) -> KafkaCredentials:
    """Tenant Kafka credentials (adr/0145), made at the first call: its admin client connects only then."""
    st = conn.app.state
    return per_app(conn, "kafka_credentials", lambda: KafkaCredentials(
        st.settings, st.db, KafkaAccess(st.settings.kafka, partitions=st.settings.kafka_partitions)))


KafkaCredentialsDep = Annotated[KafkaCredentials, Depends(get_kafka_credentials)]


async def get_kafka_export(conn: HTTPConnection) -> KafkaExport:
    """A tenant's continuous Kafka export (adr/0146), made at the first call."""
    st = conn.app.state
    return per_app(conn, "kafka_export", lambda: KafkaExport(st.db, st.outbox, ExportTopics(
        st.settings.kafka, st.settings.kafka_partitions)))


KafkaExportDep = Annotated[KafkaExport, Depends(get_kafka_export)]


# -- who is asking ------------------------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False)


async def get_principal(request: Request, keys: KeysDep,
                        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """A Bearer token, or else a console session's cookie (adr/0161): the same token, verified the same way;
    a cookie-borne request that changes something must also echo the session's CSRF value. A token seen
    before is answered on the event loop from memory; a new one (signature check) or one whose revocation
    state needs Postgres goes to the thread pool (adr/0188)."""
    token = creds.credentials if creds is not None else request.cookies.get(SESSION_COOKIE)
    if not token:
        raise ApiError(401, "unauthenticated", "a Bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        principal = keys.verified_in_memory(token)
        if principal is None:
            principal = await run_in_threadpool(keys.verify, token)
    except TokenRevoked as exc:  # a valid token whose tenant is suspended or client revoked (adr/0107)
        challenge = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise ApiError(exc.status, exc.code, str(exc), challenge) from exc
    except TokenError as exc:
        raise ApiError(401, "invalid_token", f"token rejected: {exc}", {"WWW-Authenticate": "Bearer"}) from exc
    if creds is None and request.method not in SAFE_METHODS and not csrf_ok(principal, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "csrf_failed", "a session's unsafe request must send its CSRF value in X-CSRF-Token")
    request.state.principal = principal  # for the user-action audit (gateway/api/user_audit.py)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(scope: str, *alternatives: str):
    """A tenant route's guard: the token must carry ``scope`` or one of ``alternatives`` (and therefore be a
    tenant token)."""
    accepted = (scope, *alternatives)
    needs = f"the {scope} scope" if not alternatives else f"one of the scopes {', '.join(accepted)}"

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.tenant_id or not any(s in principal.scopes for s in accepted):
            raise ApiError(403, "insufficient_scope", f"this route needs {needs}")
        return principal

    return check


async def require_platform_admin(principal: PrincipalDep) -> Principal:
    """Tenant management: a platform token (``platform_admin`` claim and the platform scope) only."""
    if not principal.platform_admin or PLATFORM_SCOPE not in principal.scopes:
        raise ApiError(403, "platform_admin_required", "this route needs a platform administrator token")
    return principal


def tenant_principal(scope: str):
    """``Annotated`` alias for handlers: ``principal: tenant_principal("devices:read")``."""
    return Annotated[Principal, Depends(require(scope))]


DevicesRead = tenant_principal("devices:read")
DevicesWrite = tenant_principal("devices:write")
ClientsWrite = tenant_principal("clients:write")
AuditRead = tenant_principal("audit:read")
KafkaCredentialsWrite = tenant_principal("kafka:credentials")
UsersWrite = tenant_principal("users:write")
PlatformAdmin = Annotated[Principal, Depends(require_platform_admin)]
