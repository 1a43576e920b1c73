"""One owner per OPC-UA server: a session that connects, subscribes the node map, notices a lost
connection (the client's watchdog) and reconnects with backoff, then subscribes again. A fresh
subscription delivers every node's current value, so a server that restarted is read again in full."""

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

from .config import DeviceConfig, SecurityMode, SecurityPolicy, ServerConfig

log = logging.getLogger(__name__)

OnChange = Callable[[str, str, Any, Any], None]  # device id, metric, value, DataValue
OnEvent = Callable[[str, str, str, dict[str, str]], None]  # device id, event type, reason, details


class _Handler:
    """asyncua calls these from its receive task; they only hand over, never block."""

    def __init__(self, session: ServerSession):
        self.session = session

    def datachange_notification(self, node, val, data) -> None:
        self.session.on_notification(node, val, data)

    def status_change_notification(self, status) -> None:
        if not status.is_good():
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
                await self.lost.wait()
                reason = "connection to the server lost"
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
        sub = await c.create_subscription(s.publishing_interval_ms, _Handler(self))
        self._nodes.clear()
        nodes = []
        for d in s.devices:
            for n in d.nodes:
                node = c.get_node(n.node_id)
                self._nodes.setdefault(node.nodeid, []).append((d.device_id, n.metric))
                nodes.append((d, n, node))
        results = await sub.subscribe_data_change([node for _, _, node in nodes])
        for (d, n, _), res in zip(nodes, results, strict=True):
            if isinstance(res, ua.StatusCode):  # a node the server does not have: that point only is skipped
                self.on_event(d.device_id, "CONFIG_ISSUE", f"{d.device_id}/{n.metric}: node_id {n.node_id} "
                              f"cannot be subscribed: {res.name}", {"node_id": n.node_id, "metric": n.metric})
        log.info("opcua %s: subscribed %d nodes", s.endpoint, len(nodes))

    def on_notification(self, node, val, data) -> None:
        for device_id, metric in self._nodes.get(node.nodeid, ()):
            self.on_change(device_id, metric, val, data.monitored_item.Value)

    async def _close(self) -> None:
        c, self.client = self.client, None
        if c is not None:
            try:
                await asyncio.wait_for(c.disconnect(), 5)
            except Exception:  # a dead server cannot be told goodbye
                pass

    # -- commands --------------------------------------------------------------------------------------
    def node(self, node_id: str):
        if self.client is None or not self.connected:
            raise ConnectionError(f"not connected to {self.server.endpoint}")
        return self.client.get_node(node_id)
