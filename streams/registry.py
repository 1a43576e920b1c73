"""The device registry as every streams worker sees it: a table fed by the compacted
``fleetstream.registry`` topic (key ``tenant:device``, value ``RegistryEntry``).

Every worker needs every device's entry (validation of any partition may need any device after a
rebalance, and entries are small), so each worker reads the whole compacted topic into memory with a
plain consumer (no consumer group) and follows it (``runtime.compacted``, adr/0125). ``caught_up`` turns true
once the high-water marks seen at start have been read: before that, "not in the registry" means nothing
(adr/0051).

Beside it the view follows the compacted ``fleetstream.tenants`` topic (key tenant id, value
``TenantEntry``): a suspended or deleted tenant's readings are refused whatever its devices' entries say
(adr/0107). A tenant with no entry is active.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from runtime.compacted import CompactedFollower
from runtime.kafka import KafkaLike
from schemas import ValueDeserializationError, codec, split_key, topics

log = logging.getLogger(__name__)

ACCEPTING = frozenset({"provisioned", "active"})


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    status: str
    device_type: str | None
    tags: tuple[str, ...]
    protocol: str | None = None  # attributes["protocol"]: how commands reach it (None: MQTT)
    offline_after_s: int | None = None  # attributes["offline_after_s"]: inactivity timeout of this device


class TenantView(CompactedFollower):
    """Tenant status from ``fleetstream.tenants``; only tenants that are not active are kept."""

    def __init__(self, kafka: KafkaLike, topic: str = topics.TENANTS.name):
        super().__init__(kafka, [topic], name="tenant-view", batch=1000)
        self.refused: dict[str, str] = {}  # tenant id → status (suspended, deleted)

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        tenant = key.decode(errors="replace")
        if value is None:
            self.refused.pop(tenant, None)
            return
        try:
            e = codec("tenant_entry").decode(value)
        except ValueDeserializationError as exc:
            log.warning("tenants: undecodable entry for %r: %s", key, exc)
            return
        if e["status"] == "active":
            self.refused.pop(tenant, None)
        else:
            self.refused[tenant] = e["status"]


class RegistryView(CompactedFollower):
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param topic: the compacted registry topic (default ``fleetstream.registry``).
    :param tenant_topic: the compacted tenant topic, followed by ``tenant_view`` (None: not followed)."""

    def __init__(self, kafka: KafkaLike, topic: str = topics.REGISTRY.name,
                 tenant_topic: str | None = topics.TENANTS.name):
        super().__init__(kafka, [topic], name="registry-view", batch=1000)
        self.devices: dict[tuple[str, str], DeviceInfo] = {}
        self.tenants: dict[str, int] = {}  # entries per tenant: does the control plane publish for it?
        self.tenant_view = TenantView(kafka, tenant_topic) if tenant_topic else None

    def start(self):
        if self.tenant_view is not None:
            self.tenant_view.start()
        return super().start()

    def stop(self, timeout: float = 5.0) -> None:
        if self.tenant_view is not None:
            self.tenant_view.stop(timeout)
        super().stop(timeout)

    def sync(self, timeout: float = 2.0) -> bool:
        """Catches up both the registry and the tenant view (a resumed tenant's entry can be behind its first
        reading, as a new device's entry can)."""
        ok = super().sync(timeout)
        if self.tenant_view is not None:
            ok = self.tenant_view.sync(timeout) and ok
        return ok

    def tenant_refused(self, tenant_id: str) -> str | None:
        """The status of a tenant whose data is refused (``suspended``, ``deleted``), else None."""
        return self.tenant_view.refused.get(tenant_id) if self.tenant_view is not None else None

    def lookup(self, tenant_id: str, device_id: str) -> DeviceInfo | None:
        return self.devices.get((tenant_id, device_id))

    def tenant_published(self, tenant_id: str) -> bool:
        return self.tenants.get(tenant_id, 0) > 0

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            tenant, device = split_key(key)
        except Exception:
            log.warning("registry: ignoring key %r", key)
            return
        k = (tenant, device)
        if value is None:  # tombstone: device deleted
            if self.devices.pop(k, None) is not None:
                self.tenants[tenant] -= 1
            return
        try:
            e = codec("registry_entry").decode(value)
        except ValueDeserializationError as exc:
            log.warning("registry: undecodable entry for %s: %s", key, exc)
            return
        if k not in self.devices:
            self.tenants[tenant] = self.tenants.get(tenant, 0) + 1
        attrs = e["attributes"]
        self.devices[k] = DeviceInfo(e["status"], e["device_type"], tuple(e["tags"]), attrs.get("protocol"),
                                     _int_or_none(attrs.get("offline_after_s")))

    def on_caught_up(self) -> None:
        log.info("registry view caught up: %d devices", len(self.devices))


def _int_or_none(v: str | None) -> int | None:
    try:
        return int(float(v)) if v else None
    except ValueError:
        return None
