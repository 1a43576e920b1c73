"""Suspended tenants and revoked API clients, refused on every request (adr/0107).

Tokens are verified by signature alone, so before this a suspended tenant's or a revoked client's tokens
worked until they expired (15 min). Every gateway process keeps the (small) set of non-active tenants and
revoked clients in memory and checks each verified token against it: two set lookups, no I/O.

The set stays current through Postgres LISTEN/NOTIFY: triggers on ``tenants.status`` and
``api_clients.revoked_at`` notify channel ``fleetstream_auth`` when the changing transaction commits, and
each process's listener applies the change, so every replica refuses within milliseconds. The listener
subscribes before it loads the set, so nothing committed between the two is missed; notifications arrive
in commit order, so the last one for an id is its current state.

When the listener is not connected (start-up, a lost connection) the set may be stale, so each request
asks Postgres instead (``auth_status``), cached for ``FALLBACK_TTL_S``; if Postgres cannot answer either,
the request is refused with 503 rather than served on a stale answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg

from .tokens import Principal, TokenError

log = logging.getLogger(__name__)

CHANNEL = "fleetstream_auth"
IDLE_WAIT_S = 1.0
HEARTBEAT_S = 5.0  # a silent dead connection is noticed by this query (and libpq keepalives) at the latest
FALLBACK_TTL_S = 0.5
CONNECT_KW = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
              "tcp_user_timeout": 10_000, "connect_timeout": 5}


class TokenRevoked(TokenError):
    """A valid token whose tenant or client may no longer act; ``status`` and ``code`` for the answer."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


class AuthStateUnavailable(TokenRevoked):
    def __init__(self, message: str):
        super().__init__(503, "auth_state_unavailable", message)


class AuthState:
    """:param dsn: application-role DSN for the listener's own session.
    :param fallback_pool: a ``psycopg_pool.ConnectionPool`` for per-request answers while not listening."""

    def __init__(self, dsn: str, fallback_pool=None):
        self.dsn, self.pool = dsn, fallback_pool
        self.tenants: dict[str, str] = {}  # tenant id → status, only tenants that are not active
        self.clients: set[str] = set()  # revoked client ids
        self.live = threading.Event()  # the sets are current
        self.stats = {"notifications": 0, "reloads": 0, "fallback_queries": 0}
        self._cache: dict[tuple[str, str], tuple[float, str | None, bool]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auth-state", daemon=True)

    def start(self, wait_s: float = 10.0) -> AuthState:
        self._thread.start()
        self.live.wait(wait_s)  # not fatal: requests ask Postgres until the listener is up
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    # -- the per-request check ----------------------------------------------------------------------------
    def check(self, principal: Principal) -> None:
        """Raises ``TokenRevoked`` when the token's tenant is not active or its client is revoked."""
        if principal.platform_admin or not principal.tenant_id:
            return
        if self.live.is_set():
            status = self.tenants.get(principal.tenant_id)
            revoked = principal.client_id in self.clients
        else:
            status, revoked = self._ask(principal.tenant_id, principal.client_id)
        _refuse(status, revoked)

    def check_in_memory(self, principal: Principal) -> bool:
        """``check`` when the listener keeps the sets current (no I/O): raises as ``check`` does; False when
        the answer would need Postgres (call ``check`` off the event loop then)."""
        if principal.platform_admin or not principal.tenant_id:
            return True
        tenants, clients = self.tenants, self.clients
        if not self.live.is_set():
            return False
        _refuse(tenants.get(principal.tenant_id), principal.client_id in clients)
        return True

    def tenant_refused(self, tenant_id: str) -> bool:
        if self.live.is_set():
            return tenant_id in self.tenants
        status, _ = self._ask(tenant_id, "")
        return status is not None and status != "active"

    def _ask(self, tenant_id: str, client_id: str) -> tuple[str | None, bool]:
        now = time.monotonic()
        hit = self._cache.get((tenant_id, client_id))
        if hit and hit[0] > now:
            return hit[1], hit[2]
        if self.pool is None:
            raise AuthStateUnavailable("tenant and client status are unknown (no listener, no database)")
        try:
            with self.pool.connection(timeout=2) as conn:
                row = conn.execute("select * from auth_status(%s, %s)", (tenant_id, client_id)).fetchone()
        except Exception as exc:
            raise AuthStateUnavailable(f"tenant and client status cannot be checked: {exc}") from exc
        self.stats["fallback_queries"] += 1
        status, revoked = (row["tenant_status"], row["client_revoked"]) if isinstance(row, dict) else row
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(tenant_id, client_id)] = (now + FALLBACK_TTL_S, status, bool(revoked))
        return status, bool(revoked)

    # -- the listener ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, **CONNECT_KW) as conn:
                    conn.execute(f"listen {CHANNEL}")  # before loading: no change falls between the two
                    self._reload(conn)
                    backoff = 0.2
                    self._follow(conn)
            except Exception as exc:
                if self.live.is_set():
                    log.warning("auth state listener lost (%s); asking Postgres per request until it is back", exc)
                self.live.clear()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.live.clear()

    def _reload(self, conn: psycopg.Connection) -> None:
        tenants, clients = {}, set()
        for kind, ident, status in conn.execute("select kind, id, status from auth_denylist()"):
            if kind == "tenant":
                tenants[ident] = status
            else:
                clients.add(ident)
        self.tenants, self.clients = tenants, clients  # swapped whole: readers never see half a reload
        self._cache.clear()
        self.stats["reloads"] += 1
        self.live.set()

    def _follow(self, conn: psycopg.Connection) -> None:
        beat = time.monotonic()
        while not self._stop.is_set():
            for n in conn.notifies(timeout=IDLE_WAIT_S, stop_after=64):
                self.apply(n.payload)
            if time.monotonic() - beat > HEARTBEAT_S:
                conn.execute("select 1")
                beat = time.monotonic()

    def apply(self, payload: str) -> None:
        try:
            change = json.loads(payload)
            kind, ident, status = change["kind"], str(change["id"]), change["status"]
        except (ValueError, KeyError, TypeError):
            log.warning("auth state: ignoring notification %r", payload)
            return
        self.stats["notifications"] += 1
        log.info("auth state: %s %s is now %s", kind, ident, status)  # operators' trace; timed by the benchmark
        if kind == "tenant":
            if status == "active":
                self.tenants.pop(ident, None)
            else:
                self.tenants[ident] = status
        elif kind == "client":
            if status == "revoked":
                self.clients.add(ident)
            else:
                self.clients.discard(ident)


def _refuse(tenant_status: str | None, client_revoked: bool) -> None:
    if tenant_status == "suspended":
        raise TokenRevoked(403, "tenant_suspended", "this tenant is suspended")
    if tenant_status is not None and tenant_status != "active":
        raise TokenRevoked(403, f"tenant_{tenant_status}", f"this tenant is {tenant_status}")
    if client_revoked:
        raise TokenRevoked(401, "token_revoked", "the API client this token was issued to has been revoked")
