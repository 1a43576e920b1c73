"""Subscribes to data changes of a site's OPC-UA servers and publishes each change as a reading; writes
and method calls deliver commands. Every device of the file belongs to the file's tenant (adr/0041)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from asyncua import ua

from ..base import Admission, CommandResult, ConnectorHealth, ListeningConnector, UplinkContext
from ..canonical import Rejected, short
from ..device_commands import (
    CommandConfig,
    CommandRefused,
    effective_commands,
    plan,
    succeeded,
    transient_failure,
)
from ..uplink import UplinkPublisher, now_ms
from .adaptor import ValueRefused, held, to_reading, to_variant
from .addressing import AddressError, resolve_node_id
from .config import OpcUaSiteConfig
from .session import ServerSession

log = logging.getLogger(__name__)

# status codes that say "not now" rather than "not this": the command agent's retry may succeed
TRANSIENT_STATUS = frozenset({ua.StatusCodes.BadTimeout, ua.StatusCodes.BadCommunicationError,
                              ua.StatusCodes.BadConnectionClosed, ua.StatusCodes.BadSessionClosed,
                              ua.StatusCodes.BadSessionIdInvalid, ua.StatusCodes.BadServerNotConnected,
                              ua.StatusCodes.BadNotConnected, ua.StatusCodes.BadTooManyOperations,
                              ua.StatusCodes.BadResourceUnavailable})


class OpcUaConnector(ListeningConnector):
    """:param site: the validated site file. :param max_skew_ms: source timestamps further ahead are refused."""

    type_name = "opcua"

    def __init__(self, uplink: UplinkPublisher, site: OpcUaSiteConfig, admission: Admission | None = None, *,
                 max_skew_ms: int = 300_000):
        super().__init__(uplink, admission)
        self.site, self.max_skew_ms = site, max_skew_ms
        self.sessions: list[ServerSession] = []
        self._by_device: dict[str, ServerSession] = {}
        self.stats.update(writes=0, calls=0, bad_quality=0)

    async def start(self) -> None:
        for server in self.site.servers:
            s = ServerSession(server, self._on_change, self._on_event)
            self.sessions.append(s)
            for d in server.devices:
                self._by_device[d.device_id] = s
            s.start()

    async def stop(self) -> None:
        for s in self.sessions:
            await s.stop()
        await asyncio.to_thread(self.uplink.flush)

    def health(self) -> ConnectorHealth:
        down = [s.server.endpoint for s in self.sessions if not s.connected]
        return ConnectorHealth(not down, f"not connected: {', '.join(down)}" if down else "all sessions up",
                               dict(self.stats))

    def _on_change(self, device_id: str, metric: str, value: Any, data_value: Any) -> None:
        received = now_ms()
        ctx = UplinkContext(self.site.tenant_id, device_id, f"opcua:{metric}", received)
        raw = json.dumps({"metric": metric, "value": short(value, 1000)}).encode()
        try:
            self._judge(ctx, metric, value, data_value, raw)
        except Exception as exc:  # a bug here must still give the change a verdict, not vanish in asyncua
            log.exception("opcua: a data change of %s/%s could not be handled", device_id, metric)
            reason = f"{metric}: the connector failed on this change: {type(exc).__name__}"
            self.publish_uplink(ctx, raw, [], [Rejected("internal_error", reason, raw)])

    def _judge(self, ctx: UplinkContext, metric: str, value: Any, data_value: Any, raw: bytes) -> None:
        received = ctx.received_ms
        status = getattr(data_value, "StatusCode", None)
        if status is not None and not status.is_good():
            self.stats["bad_quality"] += 1
            self.publish_uplink(ctx, raw, [], [Rejected("bad_quality", f"{metric}: server status {status.name}", raw)])
            return
        try:
            reading = to_reading(metric, value, getattr(data_value, "SourceTimestamp", None), received,
                                 self.max_skew_ms)
        except ValueRefused as exc:
            self.publish_uplink(ctx, raw, [], [Rejected(exc.code, f"{metric}: {exc}", raw)])
            return
        self.publish_uplink(ctx, raw, [reading])

    def _on_event(self, device_id: str, event_type: str, reason: str, details: dict[str, str]) -> None:
        self.report_event(self.site.tenant_id, device_id, event_type, reason=reason, details=details)

    # -- commands --------------------------------------------------------------------------------------
    def serves(self, tenant_id: str, device_id: str) -> bool:
        return tenant_id == self.site.tenant_id and device_id in self._by_device

    async def deliver_command(self, command: dict[str, Any]) -> CommandResult:
        """The command contract of ``connectors/device_commands.py`` (docs/commands.md): ``write``, ``call`` or
        a named command of the site file. Values are converted to the node's own data type or refused (never
        rounded or clipped); a write's result reports what the nodes hold afterwards (read back). A lost
        session or a timeout is left to the command agent's retry while attempts remain."""
        session = self._by_device[command["device_id"]]
        device = session.devices[command["device_id"]]
        try:
            action = plan(command["name"], command.get("params_json"), device.device_id, self._commands(device),
                          can_call=True)
        except CommandRefused as exc:
            return CommandResult(False, str(exc))
        try:
            if action.kind == "write":
                return await self._write(session, device, action)
            return await self._call(session, device, action)
        except AddressError as exc:
            return CommandResult(False, str(exc))
        except (ConnectionError, TimeoutError, OSError) as exc:
            return transient_failure(command, f"server unreachable: {exc}")
        except ua.UaStatusCodeError as exc:
            if exc.code in TRANSIENT_STATUS:
                return transient_failure(command, f"{type(exc).__name__}: {exc}")
            return CommandResult(False, f"the server refused: {type(exc).__name__}: {exc}")
        except Exception as exc:  # the server refused in a way asyncua does not type
            return CommandResult(False, f"{type(exc).__name__}: {exc}")

    def _commands(self, device) -> dict[str, CommandConfig]:
        """A device's methods answer to their own names (as before issue 16), then its type's and its own
        named commands."""
        out = {m.name: CommandConfig.model_construct(name=m.name, call=m.name, write=None) for m in device.methods}
        out.update(effective_commands(device.device_type, device.commands, self.site.device_types))
        return out

    async def _call(self, session: ServerSession, device, action) -> CommandResult:
        method = next((m for m in device.methods if m.name == action.method), None)
        if method is None:
            return CommandResult(False, f"{device.device_id} has no method {action.method!r}; it has: "
                                 f"{', '.join(sorted(m.name for m in device.methods)) or 'none'}")
        obj = await session.node(method.object_id)
        out = await obj.call_method(resolve_node_id(method.method_id, session.namespaces), *action.args)
        self.stats["calls"] += 1
        return CommandResult(True, result={"output": out if isinstance(out, (int, float, str, bool, list))
                                           or out is None else repr(out)})

    async def _write(self, session: ServerSession, device, action) -> CommandResult:
        nodes = {n.metric: n for n in device.nodes}
        plan_ = []
        for metric, value in action.values.items():
            n = nodes.get(metric)
            if n is None or not n.writable:
                return CommandResult(False, f"{metric!r} is not a writable node of {device.device_id}")
            node = await session.node(n.node_id, n.browse_path)
            try:
                plan_.append((metric, node, to_variant(value, await node.read_data_type_as_variant_type())))
            except ValueError as exc:
                return CommandResult(False, f"{metric}: {exc}")
        for _, node, variant in plan_:  # all converted first: a bad value writes nothing
            await node.write_value(variant)
            self.stats["writes"] += 1
        holds = {metric: held(await node.read_value()) for metric, node, _ in plan_}
        return succeeded(action, {m: action.values[m] for m, _, _ in plan_}, holds)
