"""The MQTT side of the Sparkplug host application (adr/0155): its own connection, the primary-host STATE
message, the edge nodes' messages into ``SparkplugHost`` and its verdicts out through the connector's
admission, uplink and dead-letter topic, and NCMD/DCMD (commands and rebirth requests) back.

One connection, one subscription to ``spBv1.0/#`` (not shared: seq tracking needs every message of an edge
node in one process, so exactly one connector instance is the host, ``sparkplug_host_id`` in its file).
Sparkplug 3.0 §5.6.2: the host connects with a clean session and a retained Will ``{"online": false,
"timestamp": T}`` on ``spBv1.0/STATE/<host id>``, subscribes, then publishes ``{"online": true,
"timestamp": T}`` retained with the same T. A QoS 1 message (the NDEATH Will) is acknowledged only once Kafka
has its records; the edge node's births and data come at QoS 0 (§6.4), which Sparkplug covers with seq and
rebirth, not with acknowledgements.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import threading
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from schemas.namespace import SPARKPLUG_ROOT, parse_sparkplug, sparkplug_state_topic, sparkplug_topic

from ...base import CommandResult, UplinkContext
from ...uplink import Batch, now_ms
from . import payload as pb
from .host import REBIRTH, Outcome, SparkplugHost

if TYPE_CHECKING:
    from ..connector import MqttConnector

log = logging.getLogger(__name__)

COMMAND_NAMES = ("write", "rebirth")


class SparkplugHostClient:
    """:param connector: whose admission, uplink and stats the verdicts go through.
    :param host_id: the Sparkplug host id (its STATE topic)."""

    def __init__(self, connector: MqttConnector, host_id: str, *, max_devices: int = 100):
        s = connector.settings
        self.connector, self.host_id = connector, host_id
        self.host = SparkplugHost(max_devices=max_devices, max_skew_ms=s.max_skew_ms)
        self.stats = {"messages": 0, "rebirths": 0, "commands": 0, "confirmed": 0}
        # commands sent, until a DATA shows the device holds their values: (tenant, device) → [(id, values, until)]
        self._pending: dict[tuple[str, str], list[tuple[str, dict[str, Any], int]]] = {}
        self._pending_lock = threading.Lock()  # commands on the event loop, DATA on paho's thread
        self.connected = threading.Event()
        self._birth_ts = now_ms()
        self._loop = None
        self._state_topic = sparkplug_state_topic(host_id)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{s.client_id}-sparkplug",
                        protocol=mqtt.MQTTv5, manual_ack=True)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.ca_file)
        ctx.load_cert_chain(s.cert_file, s.key_file)
        c.tls_set_context(ctx)
        c.will_set(self._state_topic, self._state(False), qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = lambda *_a: self.connected.clear()
        c.on_message = self._on_message
        self.client = c

    def _state(self, online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": self._birth_ts}).encode()

    def start(self) -> None:
        """From the connector's event loop: messages are handled there, in arrival order, so the host's state,
        the rate limiter and the stats are touched by one thread (the loop), as for ``fs/`` messages."""
        self._loop = asyncio.get_running_loop()
        s = self.connector.settings
        self.client.connect_async(s.host, s.port, keepalive=30, clean_start=True)
        self.client.loop_start()

    def stop(self) -> None:
        """Offline STATE first (§5.6.2.4: a host that stops on purpose says so before it disconnects)."""
        if self.connected.is_set():
            self.client.publish(self._state_topic, self._state(False), qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, _u, _flags, reason, _props) -> None:
        if reason.is_failure:
            log.error("sparkplug host: the broker refused the connection: %s", reason)
            return
        client.subscribe(f"{SPARKPLUG_ROOT}/#", qos=1)

    def _on_subscribe(self, client, _u, _mid, reasons, _props) -> None:
        if any(r.is_failure for r in reasons):
            log.error("sparkplug host: subscription to %s/# refused: %s", SPARKPLUG_ROOT, reasons)
            return
        client.publish(self._state_topic, self._state(True), qos=1, retain=True)
        self.connected.set()
        log.info("sparkplug host %r online (STATE timestamp %d)", self.host_id, self._birth_ts)

    # -- uplink ------------------------------------------------------------------------------------------
    def _on_message(self, client, _u, msg) -> None:
        try:
            self._loop.call_soon_threadsafe(self._process, client, msg)
        except RuntimeError:  # the loop has closed (process exit): a QoS 1 message stays unacknowledged
            pass

    def _process(self, client, msg) -> None:
        mid, qos = msg.mid, msg.qos

        def confirmed(err: Exception | None) -> None:
            if err is not None:  # unacknowledged: the broker keeps a QoS 1 message until this connection ends
                log.error("sparkplug host: kafka write failed for %s: %s", msg.topic, err)
            elif qos:
                client.ack(mid, qos)

        batch = Batch(confirmed, "mqtt")
        try:
            self._handle(msg.topic, msg.payload, batch)
        except Exception as exc:  # a bug: the message still gets a verdict (adr/0103)
            self.connector._internal_error(msg.topic, msg.payload, exc, batch)
        batch.seal()

    def _handle(self, topic: str, raw: bytes, batch: Batch) -> None:
        where = parse_sparkplug(topic)
        if where is None or where.kind in ("NCMD", "DCMD"):  # STATE of hosts, commands: not edge node input
            if topic.startswith(f"{SPARKPLUG_ROOT}/STATE/") or where is not None:
                return
            self.connector.uplink.dead_letter(code="bad_topic", reason=f"{topic!r} is not a Sparkplug B edge "
                                              "node topic", raw=raw, origin=topic, done=batch)
            return
        self.stats["messages"] += 1
        if where.kind == "DBIRTH" and where.device and self._not_its_device(where.tenant_id, where.edge_node,
                                                                             where.device, topic, raw, batch):
            return
        received = now_ms()
        out = self.host.handle(where.tenant_id, where.kind, where.edge_node, where.device, raw, received)
        self._apply(where.tenant_id, where.edge_node, topic, raw, received, out, batch)

    def _not_its_device(self, tenant: str, edge: str, device: str, topic: str, raw: bytes, batch: Batch) -> bool:
        """An ordinary device the tenant named ``<edge>.<device>`` is not the edge node's to speak for unless its
        attribute ``parent`` says so (as for gateways, adr/0157): its DBIRTH is refused, so its data never
        decodes (no birth) and the control plane never links it (adr/0158)."""
        registry = self.connector.gateways.registry
        entry = registry.get(tenant, f"{edge}.{device}") if registry is not None else None
        if entry is None or (entry.get("attributes") or {}).get("parent") == edge:
            return False
        self.connector.uplink.dead_letter(
            code="not_this_edge_nodes_device", reason=f"device {edge}.{device!s:.80} exists and is not a device of "
            f"edge node {edge!r} (its attribute parent is not {edge!r})", raw=raw, tenant_id=tenant,
            device_id=edge, origin=topic, done=batch)
        return True

    def _apply(self, tenant: str, edge: str, topic: str, raw: bytes, received: int, out: Outcome,
               batch: Batch) -> None:
        uplink, conn = self.connector.uplink, self.connector
        for ev in out.events:
            conn.stats["status_events"] += 1
            uplink.device_event(tenant, ev.device_id, ev.event_type, reason=ev.reason,
                                details={**ev.details, "topic": topic}, done=batch)
        for device_id, readings, rejected in out.uplinks:
            conn.publish_uplink(UplinkContext(tenant, device_id, topic, received), raw, readings, rejected, batch)
            if self._pending and (tenant, device_id) in self._pending:
                self._confirm(tenant, device_id, readings, received, batch)
        if out.refused is not None:
            device_id, code, reason = out.refused
            uplink.dead_letter(code=code, reason=reason, raw=raw, tenant_id=tenant, device_id=device_id,
                               origin=topic, done=batch)
        if out.rebirth:
            self.rebirth(tenant, edge)

    def rebirth(self, tenant_id: str, edge_node: str) -> None:
        """NCMD ``Node Control/Rebirth`` = true (§6.4.19): the node publishes NBIRTH and every DBIRTH again."""
        self.stats["rebirths"] += 1
        log.info("sparkplug host: asking edge node %s/%s to rebirth", tenant_id, edge_node)
        self.client.publish(sparkplug_topic(tenant_id, "NCMD", edge_node),
                            pb.encode_command(now_ms(), [(REBIRTH, pb.BOOLEAN, True)]), qos=0)

    # -- commands (adr/0122) -----------------------------------------------------------------------------
    def serves(self, tenant_id: str, device_id: str) -> bool:
        return self.host.target(tenant_id, device_id) is not None

    def deliver_command(self, command: dict[str, Any]) -> CommandResult:
        """``write`` with params ``{metric: value}`` (metrics the birth declared, with its datatypes) as an
        NCMD or DCMD; ``rebirth`` as the node's rebirth request. Sparkplug has no command acknowledgement:
        the answer is SENT, and the device's next DATA shows what it holds."""
        tenant, device = command["tenant_id"], command["device_id"]
        target = self.host.target(tenant, device)
        if target is None:
            return CommandResult.not_delivered(f"{device!r} has no current Sparkplug birth")
        if not self.connected.is_set():
            return CommandResult.not_delivered("the Sparkplug host is not connected to the broker")
        name = command["name"]
        if name == "rebirth" and target.device is None:
            self.rebirth(tenant, target.edge_node)
            return CommandResult.sent()
        if name != "write":
            return CommandResult(False, f"unknown command {name!r} for a Sparkplug "
                                 f"{'device' if target.device else 'edge node'}: use "
                                 f"{', '.join(COMMAND_NAMES) if target.device is None else 'write'}")
        try:
            params = json.loads(command.get("params_json") or "{}")
        except ValueError:
            return CommandResult(False, "params are not JSON")
        if isinstance(params, dict) and set(params) == {"values"} and isinstance(params["values"], dict) \
                and "values" not in target.types:  # the one command contract's shape (adr/0152)
            params = params["values"]
        if not isinstance(params, dict) or not params:
            return CommandResult(False, "write needs params {\"values\": {metric: value, …}}")
        metrics = []
        for metric, value in params.items():
            dt = target.types.get(metric)
            if dt is None:
                return CommandResult(False, f"metric {metric!r} is not in the birth of {device!r}")
            problem = _representable(dt, value)
            if problem:
                return CommandResult(False, f"metric {metric!r}: {problem}")
            metrics.append((metric, dt, value))
        kind = "NCMD" if target.device is None else "DCMD"
        info = self.client.publish(sparkplug_topic(tenant, kind, target.edge_node, target.device),
                                   pb.encode_command(now_ms(), metrics), qos=0)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return CommandResult.not_delivered(f"publish failed: {mqtt.error_string(info.rc)}")
        self.stats["commands"] += 1
        until = now_ms() + int(command.get("timeout_ms") or CONFIRM_WITHIN_MS)
        with self._pending_lock:
            pending = self._pending.setdefault((tenant, device), [])
            pending[:] = [p for p in pending if p[0] != command["command_id"]][-MAX_PENDING + 1:]
            pending.append((command["command_id"], {m: v for m, _dt, v in metrics}, until))
        return CommandResult.sent()

    def _confirm(self, tenant: str, device_id: str, readings, received: int, batch: Batch) -> None:
        """Sparkplug has no command answer: a write is SUCCEEDED when the device's DATA shows every written
        metric at the written value within the attempt's timeout (adr/0158). Otherwise the command agent's
        timeout retries it, as for a device that does not answer."""
        held: dict[str, Any] = {}
        for r in readings:
            held.update(r.values)
        left = []
        with self._pending_lock:
            waiting = self._pending.pop((tenant, device_id), [])
        for command_id, values, until in waiting:
            if until < received:
                continue
            if all(m in held and _same(held[m], v) for m, v in values.items()):
                self.stats["confirmed"] += 1
                self.connector.uplink.command_ack(tenant, device_id, command_id, "SUCCEEDED",
                                                  result_json=json.dumps({"holds": {m: held[m] for m in values}}),
                                                  done=batch)
            else:
                left.append((command_id, values, until))
        if left:
            with self._pending_lock:
                self._pending.setdefault((tenant, device_id), [])[:0] = left


CONFIRM_WITHIN_MS = 30_000
MAX_PENDING = 32  # commands per device awaiting their confirming DATA


def _same(held: Any, sent: Any) -> bool:
    """The DATA's value is the written one (numbers as the canonical reading holds them: float, and a
    Float metric is single precision)."""
    if isinstance(sent, bool) or isinstance(held, bool) or isinstance(sent, str):
        return held == sent
    try:
        return math.isclose(float(held), float(sent), rel_tol=1e-6, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


_INT_RANGES = {pb.INT8: (-2**7, 2**7 - 1), pb.INT16: (-2**15, 2**15 - 1), pb.INT32: (-2**31, 2**31 - 1),
               pb.INT64: (-2**63, 2**63 - 1), pb.UINT8: (0, 2**8 - 1), pb.UINT16: (0, 2**16 - 1),
               pb.UINT32: (0, 2**32 - 1), pb.UINT64: (0, 2**64 - 1), pb.DATETIME: (0, 2**64 - 1)}


def _representable(datatype: int, value: object) -> str | None:
    """Why ``value`` cannot be sent as ``datatype`` unchanged, or None (nothing is rounded or clipped)."""
    if datatype == pb.BOOLEAN:
        return None if isinstance(value, bool) else "a Boolean metric takes true or false"
    if datatype in pb.TEXTUAL:
        return None if isinstance(value, str) else "a string metric takes a string"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"a {pb.TYPE_NAMES.get(datatype)} metric takes a number"
    if datatype in _INT_RANGES:
        lo, hi = _INT_RANGES[datatype]
        if value != int(value) or not lo <= int(value) <= hi:
            return f"{value!r} is not a {pb.TYPE_NAMES[datatype]} ({lo}…{hi})"
        return None
    if datatype == pb.FLOAT and abs(value) > 3.4028234663852886e38:
        return f"{value!r} is beyond a Float"
    return None if datatype in (pb.FLOAT, pb.DOUBLE) else f"cannot send a {pb.TYPE_NAMES.get(datatype)} metric"

