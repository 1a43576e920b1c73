"""One owner per OPC-UA server: a session that connects, resolves the node map against the server's
namespace array (again on every connect: indexes may change when a server restarts), subscribes it, notices
a lost connection (the client's watchdog, or a subscription that stops publishing) and reconnects with
backoff, then resolves and subscribes again. A fresh subscription delivers every node's current value, so a
server that restarted is read again in full.

Device status follows the session (adr/0150): a device with at least one subscribed node is reported ONLINE
when its subscription starts and every ``online_every_s`` while the subscription publishes (data changes or
keep-alives), so a device whose values do not change stays online; it is reported OFFLINE when the session is
lost. A node the server refuses (unknown namespace URI, no such browse path, subscription refused) is logged
at WARNING, listed in one CONFIG_ISSUE event of its device, and not counted as subscribed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from asyncua import Client, ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
except ImportError as exc:  # pragma: no cover - an install problem, reported once at start
    raise ImportError("the OPC-UA connector needs asyncua: pip install 'fleetstream[opcua]'") from exc

from .addressing import AddressError, resolve
from .config import DeviceConfig, SecurityMode, SecurityPolicy, ServerConfig

log = logging.getLogger(__name__)

STALE_MARGIN = 2.0  # a subscription silent for twice its keep-alive period is dead
OnChange = Callable[[str, str, Any, Any], None]  # device id, metric, value, DataValue
OnEvent = Callable[[str, str, str, dict[str, str]], None]  # device id, event type, reason, details


class _Handler:
    """asyncua calls these from its receive task; they only hand over, never block."""

    def __init__(self, session: ServerSession):
        self.session = session

    def datachange_notification(self, node, val, data) -> None:
        self.session.on_notification(node, val, data)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        # the notification carries its StatusCode in .Status (e.g. BadTimeout: the server dropped the subscription)
        if not status.Status.is_good():
            log.warning("opcua %s: subscription status %s", self.session.server.endpoint, status.Status.name)
            self.session.lost.set()


class ServerSession:
    def __init__(self, server: ServerConfig, on_change: OnChange, on_event: OnEvent):
        self.server, self.on_change, self.on_event = server, on_change, on_event
        self.client: Client | None = None
        self.lost = asyncio.Event()
        self.connected = False
        self.connects = 0
        self._nodes: dict[Any, list[tuple[str, str]]] = {}  # NodeId → [(device, metric)]: a node may feed several
        self._task: asyncio.Task | None = None
        self._sub = None
        self.subscribed: dict[str, int] = {}  # device → nodes subscribed in the current session
        self.refused: dict[str, list[dict[str, str]]] = {}  # device → nodes the server refused, and why
        self.namespaces: list[str] = []
        self.devices: dict[str, DeviceConfig] = {d.device_id: d for d in server.devices}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"opcua-{self.server.endpoint}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close()

    async def _run(self) -> None:
        backoff = self.server.reconnect_min_s
        failing = False
        while True:
            try:
                await self._connect_and_subscribe()
                self.connected, failing, backoff = True, False, self.server.reconnect_min_s
                self._report_online("subscription started")
                reason = await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure means: close, wait, try again
                reason = f"{type(exc).__name__}: {exc}"
            self.connected = False
            await self._close()
            if not failing:  # one event per outage, not per attempt
                failing = True
                log.warning("opcua %s: %s; reconnecting", self.server.endpoint, reason)
                for d in self.server.devices:
                    self.on_event(d.device_id, "READ_ERROR", reason, {"endpoint": self.server.endpoint})
                    self.on_event(d.device_id, "OFFLINE", f"OPC-UA session lost: {reason}",
                                  {"endpoint": self.server.endpoint})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.server.reconnect_max_s)

    async def _connect_and_subscribe(self) -> None:
        s = self.server
        self.lost.clear()
        c = Client(s.endpoint, timeout=s.timeout_s, watchdog_intervall=1.0)
        sec = s.security
        c.application_uri = sec.application_uri
        if sec.policy is SecurityPolicy.BASIC256SHA256:
            mode = ua.MessageSecurityMode.Sign if sec.mode is SecurityMode.SIGN else \
                ua.MessageSecurityMode.SignAndEncrypt
            await c.set_security(SecurityPolicyBasic256Sha256, certificate=str(Path(sec.certificate)),
                                 private_key=str(Path(sec.private_key)),
                                 server_certificate=sec.server_certificate, mode=mode)

        async def on_lost(_exc) -> None:
            self.lost.set()

        c.connection_lost_callback = on_lost
        self.client = c
        await c.connect()
        self.connects += 1
        self.namespaces = await c.get_namespace_array()
        self._nodes.clear()
        self.subscribed, self.refused = {d.device_id: 0 for d in s.devices}, {}
        nodes = []
        for d in s.devices:
            for n in d.nodes:
                try:
                    nid = await resolve(c, n.node_id, n.browse_path, self.namespaces)
                except AddressError as exc:
                    self._refuse(d.device_id, n.metric, n.address, str(exc))
                    continue
                nodes.append((d, n, c.get_node(nid)))
        sub = await c.create_subscription(s.publishing_interval_ms, _Handler(self))
        self._sub = sub
        results = await sub.subscribe_data_change([node for _, _, node in nodes]) if nodes else []
        for (d, n, node), res in zip(nodes, results, strict=True):
            if isinstance(res, ua.StatusCode):  # e.g. BadNodeIdUnknown: that point only is skipped
                self._refuse(d.device_id, n.metric, n.address, f"the server refused the subscription: {res.name}")
                continue
            self._nodes.setdefault(node.nodeid, []).append((d.device_id, n.metric))
            self.subscribed[d.device_id] += 1
        for device_id, bad in self.refused.items():
            self.on_event(device_id, "CONFIG_ISSUE",
                          f"{len(bad)} node(s) not subscribed: " + "; ".join(f"{b['metric']} ({b['address']}): "
                                                                         f"{b['error']}" for b in bad),
                          {f"{b['metric']}": f"{b['address']}: {b['error']}" for b in bad})
        log.info("opcua %s: subscribed %d nodes, %d refused", s.endpoint, sum(self.subscribed.values()),
                 sum(len(b) for b in self.refused.values()))

    def _refuse(self, device_id: str, metric: str, address: str, error: str) -> None:
        log.warning("opcua %s: %s/%s (%s) not subscribed: %s", self.server.endpoint, device_id, metric, address,
                    error)
        self.refused.setdefault(device_id, []).append({"metric": metric, "address": address, "error": error})

    async def _watch(self) -> str:
        """Until the session is lost: reports the devices ONLINE every ``online_every_s`` while the subscription
        publishes. Returns why the session is considered lost."""
        every = self.server.online_every_s
        while True:
            try:
                async with asyncio.timeout(every):
                    await self.lost.wait()
                return "connection to the server lost"
            except TimeoutError:
                pass
            if self._sub is not None and self._sub.is_stale(STALE_MARGIN):
                return "the subscription stopped publishing (no data changes or keep-alives)"
            self._report_online("subscription healthy (data changes or keep-alives arriving)")

    def _report_online(self, reason: str) -> None:
        for device_id, count in self.subscribed.items():
            if count:
                self.on_event(device_id, "ONLINE", reason, {"endpoint": self.server.endpoint,
                                                            "nodes": str(count)})

    def on_notification(self, node, val, data) -> None:
        for device_id, metric in self._nodes.get(node.nodeid, ()):
            self.on_change(device_id, metric, val, data.monitored_item.Value)

    async def _close(self) -> None:
        c, self.client, self._sub = self.client, None, None
        if c is not None:
            try:
                await asyncio.wait_for(c.disconnect(), 5)
            except Exception:  # a dead server cannot be told goodbye
                pass

    # -- commands --------------------------------------------------------------------------------------
    def _client(self):
        if self.client is None or not self.connected:
            raise ConnectionError(f"not connected to {self.server.endpoint}")
        return self.client

    async def node(self, node_id: str | None, browse_path=None):
        """The node an address names in this session's numbering; ``AddressError`` when it names none."""
        c = self._client()
        return c.get_node(await resolve(c, node_id, browse_path, self.namespaces))
