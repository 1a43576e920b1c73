"""Every change a person makes is in the audit log with their identity (adr/0162).

Routes audit their own control-plane changes with ``actor = principal.client_id`` (``user:<id>`` for a
session). Commands, shadow edits, alert transitions and OTA campaign actions go to Kafka instead and
audited nothing; rather than touch each route, this middleware writes one entry for every successful unsafe
``/v1`` request a user made: method, path, status. The principal comes from ``get_principal``
(``request.state.principal``), so only requests that were authenticated are recorded."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth.sessions import SAFE_METHODS
from gateway.crud import audit

log = logging.getLogger(__name__)

# routes that write their own, more detailed entries for users
SELF_AUDITED = ("/v1/users", "/v1/session", "/v1/sso")


class UserActionAudit:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or not scope["path"].startswith("/v1/") \
                or scope["path"].startswith(SELF_AUDITED):
            await self.app(scope, receive, send)
            return
        answered: dict[str, int] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        principal = (scope.get("state") or {}).get("principal")
        code = answered.get("status", 500)
        if principal is None or principal.user_id is None or code >= 400:
            return
        db = scope["app"].state.db
        method, path = scope["method"], scope["path"]

        def write():
            with db.tenant_tx(principal.tenant_id) as conn:
                audit.record(conn, tenant_id=principal.tenant_id, actor=principal.client_id,
                             action=f"api.{method.lower()}", target=path, details={"status": code})

        try:
            await run_in_threadpool(write)
        except Exception:  # the action happened; a lost audit line is logged loudly rather than hidden
            log.exception("audit entry for %s %s by %s not written", method, path, principal.client_id)
