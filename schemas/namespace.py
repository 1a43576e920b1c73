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
