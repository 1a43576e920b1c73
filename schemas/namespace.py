"""The device topic namespace (adr/0003).

Every device topic is ``fs/<tenant_id>/<device_id>/<channel>[/...]``. The broker authorises each device
(by its certificate's identity) for exactly its own ``fs/<tenant>/<device>/#``, so a topic that reached
the connector proves who sent it: tenant and device are taken from the topic, never from the payload.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "fs"
UPLINK_CHANNELS = ("telemetry", "status", "shadow/reported", "commands/ack")


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    tenant_id: str
    device_id: str
    channel: str


def parse_topic(topic: str) -> DeviceTopic | None:
    parts = topic.split("/", 3)
    if len(parts) != 4 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return DeviceTopic(parts[1], parts[2], parts[3])


def device_root(tenant_id: str, device_id: str) -> str:
    return f"{PREFIX}/{tenant_id}/{device_id}"


def device_topics(tenant_id: str, device_id: str) -> dict[str, str]:
    root = device_root(tenant_id, device_id)
    return {
        "telemetry": f"{root}/telemetry",
        "status": f"{root}/status",
        "commands": f"{root}/commands",
        "command_ack": f"{root}/commands/ack",
        "shadow_reported": f"{root}/shadow/reported",
        "shadow_desired": f"{root}/shadow/desired",
        "shadow_delta": f"{root}/shadow/delta",
        "rejections": f"{root}/rejections",  # why input was refused (adr/0181); the device may subscribe
    }


# Sparkplug B 3.0 (adr/0155, adr/0156): ``spBv1.0/<group>/<type>/<edge node>[/<device>]`` and the host's
# ``spBv1.0/STATE/<host id>``. The topic root is fixed by the specification, so tenant isolation rides on the
# group: the group id is the tenant id, the edge node id the device id of the edge node's certificate.
SPARKPLUG_ROOT = "spBv1.0"
SPARKPLUG_NODE_TYPES = ("NBIRTH", "NDEATH", "NDATA")
SPARKPLUG_DEVICE_TYPES = ("DBIRTH", "DDEATH", "DDATA")
SPARKPLUG_COMMAND_TYPES = ("NCMD", "DCMD")


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    tenant_id: str  # the Sparkplug group id
    kind: str  # NBIRTH, DDATA, …
    edge_node: str
    device: str | None


def parse_sparkplug(topic: str) -> SparkplugTopic | None:
    """The parts of an edge node's topic, or None (STATE, malformed, a type that does not go with the parts)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != SPARKPLUG_ROOT or not all(parts[1:]):
        return None
    kind = parts[2]
    if len(parts) == 4 and kind in SPARKPLUG_NODE_TYPES + ("NCMD",):
        return SparkplugTopic(parts[1], kind, parts[3], None)
    if len(parts) == 5 and kind in SPARKPLUG_DEVICE_TYPES + ("DCMD",):
        return SparkplugTopic(parts[1], kind, parts[3], parts[4])
    return None


def sparkplug_topic(tenant_id: str, kind: str, edge_node: str, device: str | None = None) -> str:
    base = f"{SPARKPLUG_ROOT}/{tenant_id}/{kind}/{edge_node}"
    return base if device is None else f"{base}/{device}"


def sparkplug_state_topic(host_id: str) -> str:
    return f"{SPARKPLUG_ROOT}/STATE/{host_id}"
