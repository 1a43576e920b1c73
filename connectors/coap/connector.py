"""A CoAP server for constrained devices (adr/0043).

- ``POST /telemetry``: canonical readings as JSON (content-format 50) or CBOR (60); ``2.04`` only after
  Kafka confirmed them; ``4.00/4.01/4.03/4.13/4.29`` with a diagnostic payload otherwise.
- ``GET /commands`` (observable): the device's pending commands; an observing device is notified when a
  command for it arrives. ``POST /commands/ack``: ``{"command_id", "status", "result"?, "reason"?}``.

Every request carries the device's JWT (docs/devices/device-jwt.md): in option 65000, or, for stock clients
that cannot send that option (aiocoap-client, libcoap's coap-client), in Uri-Query options ``jwt=…``
joined in order, each at most 255 bytes as RFC 7252 allows, so a ~420-byte token is two or three
(``coap://host:5683/telemetry?jwt=<first 250>&jwt=<rest>``; adr/0184). Tenant and device come from the key
that verifies it (the registry topic holds each device's public keys), never from the payload.

Only the UDP transport is opened (aiocoap would otherwise also listen for CoAP over TCP and WebSockets on
ports of its own)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiocoap
from aiocoap import Code, Message, resource

from runtime.device_jwt import DeviceJwtVerifier, DeviceKey, DeviceTokenError

from ..base import Admission, CommandResult, ConnectorHealth, ListeningConnector, UplinkContext
from ..errors import (
    ConnectorError,
    DeviceDisabledError,
    PayloadInvalidError,
    UnauthenticatedError,
    payload_error,
)
from ..registry import ALLOWED_STATUSES
from ..uplink import UplinkPublisher, now_ms
from .adaptor import AUTH_OPTION, JSON, commands_document, to_readings
from .config import CoapConfig
from .errors import coap_code

log = logging.getLogger(__name__)
QUERY_KEY = "jwt="
ACK_STATUSES = ("ACKNOWLEDGED", "SUCCEEDED", "FAILED")


def _error(err: ConnectorError) -> Message:
    return Message(code=coap_code(err), payload=f"{err.code}: {err}".encode()[:512])


class CoapConnector(ListeningConnector):
    """:param admission: its registry also answers JWT key lookups. :param max_skew_ms: see canonical."""

    type_name = "coap"

    def __init__(self, uplink: UplinkPublisher, config: CoapConfig, admission: Admission, *,
                 max_skew_ms: int = 300_000):
        super().__init__(uplink, admission)
        self.config, self.max_skew_ms = config, max_skew_ms
        self.registry = admission.registry
        self.verifier = DeviceJwtVerifier(self._key_lookup)
        self.context: aiocoap.Context | None = None
        self.pending: dict[str, dict[str, dict]] = {}  # tenant:device → command id → command
        self.commands = _CommandsResource(self)
        self._auth_memo: dict[tuple, tuple[tuple[str, str], float]] = {}

    async def start(self) -> None:
        site = resource.Site()
        site.add_resource(["telemetry"], _TelemetryResource(self))
        site.add_resource(["commands"], self.commands)
        site.add_resource(["commands", "ack"], _AckResource(self))
        self.context = await aiocoap.Context.create_server_context(site, bind=(self.config.host, self.config.port),
                                                                   transports=["udp6"])
        log.info("coap listening on %s:%s", self.config.host, self.config.port)

    async def stop(self) -> None:
        if self.context is not None:
            await self.context.shutdown()
            self.context = None
        await asyncio.to_thread(self.uplink.flush)

    def health(self) -> ConnectorHealth:
        up = self.context is not None
        return ConnectorHealth(up, "listening" if up else "stopped", dict(self.stats))

    # -- identity --------------------------------------------------------------------------------------
    def _key_lookup(self, tenant_id: str, device_id: str, kid: str) -> DeviceKey | None:
        found = self.registry.jwt_key(tenant_id, device_id, kid) if hasattr(self.registry, "jwt_key") else None
        if found is None:
            return None
        entry, pem = found
        return DeviceKey(kid, entry["tenant_id"], entry["device_id"], pem, active=entry["status"] in ALLOWED_STATUSES)

    def authenticate(self, request: Message) -> tuple[str, str]:
        token = request_token(request)
        # an observation registration is seen twice (add_observation, then render): verify once
        memo_key = (str(request.remote.hostinfo), bytes(request.token), token)
        now = time.monotonic()
        hit = self._auth_memo.get(memo_key)
        if hit and hit[1] > now:
            return hit[0]
        try:
            ident = self.verifier.verify(token)
        except DeviceTokenError as exc:
            if exc.code == "device_inactive":
                raise DeviceDisabledError(str(exc)) from exc
            raise UnauthenticatedError(f"{exc.code}: {exc}") from exc
        if len(self._auth_memo) > 10_000:
            self._auth_memo = {k: v for k, v in self._auth_memo.items() if v[1] > now}
        self._auth_memo[memo_key] = ((ident.tenant_id, ident.device_id), now + 30)
        return ident.tenant_id, ident.device_id

    async def confirmed(self, write) -> Exception | None:
        """Runs ``write(done)`` and waits until Kafka confirmed (or refused) what it wrote."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        refusal = write(lambda err: loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(err)))
        err = await fut
        return refusal or err

    # -- commands --------------------------------------------------------------------------------------
    def serves(self, tenant_id: str, device_id: str) -> bool:
        return self.registry.get(tenant_id, device_id) is not None

    async def deliver_command(self, command: dict[str, Any]) -> CommandResult:
        """Queued for the device and pushed to it if it observes ``/commands``; the device's own ack
        (``POST /commands/ack``) reports the outcome, so this one is ``SENT``."""
        key = f"{command['tenant_id']}:{command['device_id']}"
        self.pending.setdefault(key, {})[command["command_id"]] = command
        self.commands.notify(key)
        return CommandResult.sent()


def request_token(request: Message) -> str:
    """The device JWT of a request: option 65000, else the ``jwt=`` Uri-Query options joined in order."""
    opt = request.opt.get_option(AUTH_OPTION)
    if opt:
        return bytes(opt[0].value).decode("ascii", "replace")
    parts = [q[len(QUERY_KEY):] for q in request.opt.uri_query if q.startswith(QUERY_KEY)]
    if not parts:
        raise UnauthenticatedError(f"the device JWT is required in option {AUTH_OPTION} or as Uri-Query "
                                   f"{QUERY_KEY}<token> (split over several {QUERY_KEY} options of at most 255 "
                                   "bytes each; docs/devices/coap.md)")
    return "".join(parts)


class _TelemetryResource(resource.Resource):
    def __init__(self, conn: CoapConnector):
        super().__init__()
        self.conn = conn

    async def render_post(self, request: Message) -> Message:
        c = self.conn
        try:
            tenant_id, device_id = c.authenticate(request)
        except ConnectorError as exc:
            return _error(exc)
        received = now_ms()
        readings, rejected = to_readings(request.payload, request.opt.content_format, received, c.max_skew_ms)
        ctx = UplinkContext(tenant_id, device_id, "coap:/telemetry", received)
        result = await c.confirmed(lambda done: c.publish_uplink(ctx, request.payload, readings, rejected, done))
        if isinstance(result, ConnectorError):
            return _error(result)
        if result is not None:
            return Message(code=Code.SERVICE_UNAVAILABLE, payload=b"not_stored: retry")
        if not readings:
            return _error(payload_error(rejected[0].code, rejected[0].reason))
        return Message(code=Code.CHANGED, content_format=JSON,
                       payload=json.dumps({"accepted": len(readings), "rejected": len(rejected)}).encode())


class _CommandsResource(resource.ObservableResource):
    def __init__(self, conn: CoapConnector):
        super().__init__()
        self.conn = conn
        self._by_device: dict[str, set] = {}

    async def add_observation(self, request, serverobservation) -> None:
        try:
            tenant_id, device_id = self.conn.authenticate(request)
        except ConnectorError:
            return  # render_get answers 4.01, which ends the observation
        key = f"{tenant_id}:{device_id}"
        self._by_device.setdefault(key, set()).add(serverobservation)
        serverobservation.accept(lambda: self._by_device.get(key, set()).discard(serverobservation))

    def notify(self, key: str) -> None:
        for obs in list(self._by_device.get(key, ())):
            obs.trigger(self._document(key))

    def _document(self, key: str) -> Message:
        return Message(code=Code.CONTENT, content_format=JSON,
                       payload=commands_document(self.conn.pending.get(key, {})))

    async def render_get(self, request: Message) -> Message:
        try:
            tenant_id, device_id = self.conn.authenticate(request)
        except ConnectorError as exc:
            return _error(exc)
        return self._document(f"{tenant_id}:{device_id}")


class _AckResource(resource.Resource):
    def __init__(self, conn: CoapConnector):
        super().__init__()
        self.conn = conn

    async def render_post(self, request: Message) -> Message:
        c = self.conn
        try:
            tenant_id, device_id = c.authenticate(request)
            doc = json.loads(request.payload)
            if not isinstance(doc, dict) or doc.get("status") not in ACK_STATUSES or not doc.get("command_id"):
                raise ValueError
        except ConnectorError as exc:
            return _error(exc)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
            return _error(PayloadInvalidError(f'ack must be {{"command_id", "status": {"|".join(ACK_STATUSES)}}}'))
        key = f"{tenant_id}:{device_id}"
        if str(doc["command_id"]) not in c.pending.get(key, {}):  # only its own commands
            return Message(code=Code.NOT_FOUND, payload=b"unknown_command: no such pending command")
        result = doc.get("result")
        err = await c.confirmed(lambda done: c.uplink.command_ack(
            tenant_id, device_id, str(doc["command_id"]), doc["status"], done=done,
            result_json=json.dumps(result) if result is not None else None,
            reason=str(doc["reason"])[:500] if doc.get("reason") else None))
        if err is not None:
            return Message(code=Code.SERVICE_UNAVAILABLE, payload=b"not_stored: retry")
        if doc["status"] != "ACKNOWLEDGED":
            c.pending.get(key, {}).pop(str(doc["command_id"]), None)
        return Message(code=Code.CHANGED)
