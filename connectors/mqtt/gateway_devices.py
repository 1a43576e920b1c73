"""Gateway devices (adr/0157): one MQTT connection, with the gateway's own certificate, carrying many
sub-devices, in the manner of ThingsBoard's gateway API.

Topics, all inside the gateway's own namespace ``fs/<T>/<G>/`` (so the broker already proves the sender is
G, adr/0100)::

    gateway/connect       {"device": "<name>"}                       → ONLINE of <G>.<name>
    gateway/disconnect    {"device": "<name>"}                       → OFFLINE of <G>.<name>
    gateway/telemetry     {"<name>": [{"ts", "values"}, …] | {"ts", "values"}, …}   → readings per sub-device
    gateway/commands/ack  {"device": "<name>", "command_id", "status", "result"?, "reason"?}
    gateway/commands      (down) {"device": "<name>", "command_id", "name", "params", "attempt", "expires_at"}

A sub-device ``<name>`` of gateway ``G`` is the fleetstream device ``<G>.<name>``: the id is built from the
gateway's proven identity, so G can never name another gateway's sub-device nor an ordinary device of the
tenant. The one id it could still reach, an ordinary device the tenant itself named ``<G>.<something>``, is
refused unless that device's registry attributes say ``parent: <G>``. The gateway must be allowed to speak
for others: its registry attributes carry ``gateway: true`` and optionally ``gateway_max_devices`` (default
``DEFAULT_LIMIT``); a sub-device is taken on first sight up to that many per gateway (a PROVISIONED event
marks the first sight in this connector process). The control plane turns that event into the sub-device's
row and registry entry, counting the limit again over every sub-device it holds (gateway/sub_devices.py,
adr/0158): this process's count is the fast path, Postgres's the one that survives restarts and replicas.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from schemas.limits import MAX_PAYLOAD_BYTES
from schemas.namespace import device_root

from ..base import CommandResult, Registry, UplinkContext
from ..canonical import parse_document
from ..uplink import Batch
from .downlink import BadPayload, now_ms, parse_ack

log = logging.getLogger(__name__)

CHANNELS = ("gateway/connect", "gateway/disconnect", "gateway/telemetry", "gateway/commands/ack")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a fleetstream device id (gateway/identity)
TRUE = frozenset({"true", "1", "yes"})
# Reason codes this module dead-letters with
CODES = frozenset({"oversize", "not_a_gateway", "gateway_device_limit", "bad_sub_device", "not_this_gateways_device",
                   "invalid_json", "wrong_type", "invalid_ack"})


class Refused(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def commands_topic(tenant_id: str, gateway_id: str) -> str:
    return f"{device_root(tenant_id, gateway_id)}/gateway/commands"


class GatewayDevices:
    """:param connector: whose admission, uplink and settings readings go through (``MqttConnector``).
    :param registry: the device registry view (gateway flags, limits and sub-devices' parents)."""

    def __init__(self, connector, registry: Registry | None):
        self.connector, self.registry = connector, registry
        self._children: dict[tuple[str, str], set[str]] = {}  # (tenant, gateway) → sub-device names seen
        self.stats = {"messages": 0, "refused": 0, "commands": 0}

    # -- uplink --------------------------------------------------------------------------------------------
    def handle(self, tenant: str, gateway: str, channel: str, raw: bytes, topic: str, received: int,
               batch: Batch) -> None:
        self.stats["messages"] += 1
        try:
            if len(raw) > MAX_PAYLOAD_BYTES:
                raise Refused("oversize", f"payload is {len(raw)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
            limit = self._gateway_limit(tenant, gateway)
            doc = _json(raw)
            if channel == "gateway/telemetry":
                if not isinstance(doc, dict) or not doc:
                    raise Refused("wrong_type", "gateway telemetry is an object {sub-device name: readings}")
                for name, items in doc.items():  # each sub-device gets its own verdict
                    part = json.dumps({name: items}, separators=(",", ":")).encode() if len(doc) > 1 else raw
                    try:
                        child = self._child(tenant, gateway, name, limit, topic, batch)
                    except Refused as exc:
                        self.stats["refused"] += 1
                        self.connector.uplink.dead_letter(code=exc.code, reason=exc.reason, raw=part,
                                                          tenant_id=tenant, device_id=gateway, origin=topic,
                                                          done=batch)
                        continue
                    readings, rejected = parse_document(items, part, received, self.connector.settings.max_skew_ms)
                    self.connector.publish_uplink(UplinkContext(tenant, child, topic, received), part, readings,
                                                  rejected, batch)
            elif channel in ("gateway/connect", "gateway/disconnect"):
                name = doc.get("device") if isinstance(doc, dict) else None
                child = self._child(tenant, gateway, name, limit, topic, batch)
                self.connector.uplink.device_event(
                    tenant, child, "ONLINE" if channel == "gateway/connect" else "OFFLINE",
                    reason=f"sub-device {channel.rsplit('/', 1)[1]} via gateway", details={"gateway": gateway,
                                                                                          "topic": topic},
                    done=batch)
            else:  # gateway/commands/ack
                name = doc.get("device") if isinstance(doc, dict) else None
                child = self._child(tenant, gateway, name, limit, topic, batch)
                try:
                    command_id, status, result, reason = parse_ack(raw)
                except BadPayload as exc:
                    raise Refused(exc.code, exc.reason) from None
                self.connector.uplink.command_ack(tenant, child, command_id, status, result_json=result,
                                                  reason=reason, done=batch)
        except Refused as exc:
            self.stats["refused"] += 1
            self.connector.uplink.dead_letter(code=exc.code, reason=exc.reason, raw=raw, tenant_id=tenant,
                                              device_id=gateway, origin=topic, done=batch)

    def _gateway_limit(self, tenant: str, gateway: str) -> int:
        entry = self.registry.get(tenant, gateway) if self.registry is not None else None
        attrs = (entry or {}).get("attributes") or {}
        if str(attrs.get("gateway", "")).lower() not in TRUE:
            raise Refused("not_a_gateway", f"device {gateway!r} may not speak for sub-devices: set its attribute "
                          "gateway=true")
        try:
            return max(0, min(int(attrs.get("gateway_max_devices", DEFAULT_LIMIT)), MAX_LIMIT))
        except ValueError:
            return DEFAULT_LIMIT

    def _child(self, tenant: str, gateway: str, name: Any, limit: int, topic: str, batch: Batch) -> str:
        """The sub-device's fleetstream id; taken on first sight within the gateway's limit."""
        if not isinstance(name, str) or not name:
            raise Refused("bad_sub_device", "a sub-device is named by a non-empty string")
        child = f"{gateway}.{name}"
        if "/" in name or not DEVICE_ID.match(child):
            raise Refused("bad_sub_device", f"sub-device {name[:80]!r} of {gateway!r} makes the device id "
                          f"{child[:100]!r}: at most 64 of A-Z a-z 0-9 . _ -")
        seen = self._children.setdefault((tenant, gateway), set())
        if name in seen:
            return child
        entry = self.registry.get(tenant, child) if self.registry is not None else None
        if entry is not None and ((entry.get("attributes") or {}).get("parent")) != gateway:
            raise Refused("not_this_gateways_device", f"device {child!r} exists and is not a sub-device of "
                          f"{gateway!r} (its attribute parent is not {gateway!r})")
        if len(seen) >= limit:
            raise Refused("gateway_device_limit", f"gateway {gateway!r} already has {len(seen)} sub-devices, "
                          "its limit (attribute gateway_max_devices)")
        seen.add(name)
        self.connector.uplink.device_event(tenant, child, "PROVISIONED", reason="sub-device first seen via its "
                                           "gateway", details={"gateway": gateway, "topic": topic}, done=batch)
        return child

    # -- commands (adr/0122) -------------------------------------------------------------------------------
    def gateway_of(self, tenant: str, device_id: str) -> tuple[str, str] | None:
        """(gateway, sub-device name) when ``device_id`` is ``<G>.<name>`` of a gateway this process knows or
        the registry flags; the longest gateway id first (ids may hold dots)."""
        head, dot, name = device_id.rpartition(".")
        while dot:
            if name in self._children.get((tenant, head), ()):
                return head, name
            entry = self.registry.get(tenant, head) if self.registry is not None else None
            if entry is not None and str((entry.get("attributes") or {}).get("gateway", "")).lower() in TRUE:
                return head, name
            head, dot, rest = head.rpartition(".")
            name = f"{rest}.{name}"
        return None

    def deliver_command(self, command: dict[str, Any], client: mqtt.Client, gateway: str, name: str) -> CommandResult:
        """Published QoS 1 to the gateway's ``gateway/commands`` with the sub-device's name; the gateway answers
        on ``gateway/commands/ack``."""
        props = Properties(PacketTypes.PUBLISH)
        if command["expires_at"] is not None:
            left_s = (command["expires_at"] - now_ms()) // 1000
            if left_s <= 0:
                return CommandResult.not_delivered("less than a second of its time to live left")
            props.MessageExpiryInterval = int(left_s)
        body = json.dumps({"device": name, "command_id": command["command_id"], "name": command["name"],
                           "params": json.loads(command["params_json"] or "null"), "attempt": command["attempt"],
                           "expires_at": command["expires_at"]}).encode()
        info = client.publish(commands_topic(command["tenant_id"], gateway), body, qos=1, properties=props)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return CommandResult.not_delivered(f"the MQTT client refused it: {mqtt.error_string(info.rc)}")
        self.stats["commands"] += 1
        return CommandResult.sent()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refused("invalid_json", "a gateway message is UTF-8 JSON") from None
