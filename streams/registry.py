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
import time
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
    """Tenant status from ``fleetstream.tenants``; only tenants that are not active are kept, and the tenants
    that export their telemetry to their own topic (adr/0146)."""

    def __init__(self, kafka: KafkaLike, topic: str = topics.TENANTS.name):
        super().__init__(kafka, [topic], name="tenant-view", batch=1000)
        self.refused: dict[str, str] = {}  # tenant id → status (suspended, deleted)
        # changed in place only (readers keep a reference to this very set)
        self.exporting: set[str] = set()

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        tenant = key.decode(errors="replace")
        if value is None:
            self.refused.pop(tenant, None)
            self.exporting.discard(tenant)
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
        if e["export_telemetry"]:
            self.exporting.add(tenant)
        else:
            self.exporting.discard(tenant)


class DeviceTypeView(CompactedFollower):
    """Metric declarations per (tenant, device type) from ``fleetstream.device-types`` (adr/0182): ``metrics``
    holds the types that declare some; ``known`` names every type with an entry."""

    # a type the view does not know after a sync is a free-form name with no type behind it (devices may name
    # any type): not synced for again for this long, so its devices' batches do not each wait on a sync
    UNKNOWN_RECHECK_S = 60.0

    def __init__(self, kafka: KafkaLike, topic: str = topics.DEVICE_TYPES.name):
        super().__init__(kafka, [topic], name="device-type-view", batch=1000)
        self.metrics: dict[tuple[str, str], dict[str, dict]] = {}
        self.known: set[tuple[str, str]] = set()  # every type with an entry, declarations or not
        self._unknown_at: dict[tuple[str, str], float] = {}  # free-form types: when a sync last missed them

    def pending(self, k: tuple[str, str]) -> bool:
        """Whether type ``k`` may have an entry this view has not read yet (a type created just before the
        device whose reading names it): True until a sync has looked for it, then again every
        ``UNKNOWN_RECHECK_S``."""
        if k in self.known:
            return False
        at = self._unknown_at.get(k)
        return at is None or time.monotonic() - at > self.UNKNOWN_RECHECK_S

    def looked_for(self, k: tuple[str, str]) -> None:
        if k not in self.known:
            self._unknown_at[k] = time.monotonic()

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            k = split_key(key)
        except Exception:
            log.warning("device types: ignoring key %r", key)
            return
        if value is None:
            self.metrics.pop(k, None)
            self.known.discard(k)
            return
        try:
            e = codec("device_type_entry").decode(value)
        except ValueDeserializationError as exc:
            log.warning("device types: undecodable entry for %r: %s", key, exc)
            return
        self.known.add(k)
        self._unknown_at.pop(k, None)
        if e["metrics"]:
            self.metrics[k] = e["metrics"]
        else:
            self.metrics.pop(k, None)


class RegistryView(CompactedFollower):
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param topic: the compacted registry topic (default ``fleetstream.registry``).
    :param tenant_topic: the compacted tenant topic, followed by ``tenant_view`` (None: not followed).
    :param type_topic: the compacted device-type topic, followed by ``type_view`` (None: not followed)."""

    def __init__(self, kafka: KafkaLike, topic: str = topics.REGISTRY.name,
                 tenant_topic: str | None = topics.TENANTS.name, type_topic: str | None = topics.DEVICE_TYPES.name):
        super().__init__(kafka, [topic], name="registry-view", batch=1000)
        self.devices: dict[tuple[str, str], DeviceInfo] = {}
        self.tenants: dict[str, int] = {}  # entries per tenant: does the control plane publish for it?
        self._unpublished_at: dict[str, float] = {}  # tenants with no entries: when a sync last missed them
        self.tenant_view = TenantView(kafka, tenant_topic) if tenant_topic else None
        self.type_view = DeviceTypeView(kafka, type_topic) if type_topic else None

    def _followers(self) -> list[CompactedFollower]:
        return [v for v in (self.tenant_view, self.type_view) if v is not None]

    def start(self):
        for v in self._followers():
            v.start()
        return super().start()

    def stop(self, timeout: float = 5.0) -> None:
        for v in self._followers():
            v.stop(timeout)
        super().stop(timeout)

    def sync(self, timeout: float = 2.0) -> bool:
        """Catches up the registry, the tenant and the device-type views (a resumed tenant's entry can be behind
        its first reading, as a new device's entry or a type's new declarations can)."""
        ok = super().sync(timeout)
        for v in self._followers():
            ok = v.sync(timeout) and ok
        return ok

    def type_pending(self, tenant_id: str, device_type: str | None) -> bool:
        """Whether the device type's entry may not have been read yet (``DeviceTypeView.pending``)."""
        if device_type is None or self.type_view is None:
            return False
        return self.type_view.pending((tenant_id, device_type))

    def tenant_pending(self, tenant_id: str) -> bool:
        """Whether a tenant with no device entries may have some this view has not read yet: True until a sync
        has looked (``tenant_looked_for``), then again every ``DeviceTypeView.UNKNOWN_RECHECK_S``, so a tenant
        whose devices predate registry publishing (adr/0051) costs one sync a minute, not one per batch."""
        if self.tenant_published(tenant_id):
            return False
        at = self._unpublished_at.get(tenant_id)
        return at is None or time.monotonic() - at > DeviceTypeView.UNKNOWN_RECHECK_S

    def tenant_looked_for(self, tenant_id: str) -> None:
        if not self.tenant_published(tenant_id):
            self._unpublished_at[tenant_id] = time.monotonic()

    def type_looked_for(self, tenant_id: str, device_type: str | None) -> None:
        if device_type is not None and self.type_view is not None:
            self.type_view.looked_for((tenant_id, device_type))

    def declared_metrics(self, tenant_id: str, device_type: str | None) -> dict[str, dict] | None:
        """The metric declarations of the device's type, or None when it declares none (adr/0182)."""
        if device_type is None or self.type_view is None:
            return None
        return self.type_view.metrics.get((tenant_id, device_type))

    def tenant_refused(self, tenant_id: str) -> str | None:
        """The status of a tenant whose data is refused (``suspended``, ``deleted``), else None."""
        return self.tenant_view.refused.get(tenant_id) if self.tenant_view is not None else None

    @property
    def exporting(self) -> set[str]:
        """The tenants whose validated readings are copied to their export topic (adr/0146): a live set."""
        return self.tenant_view.exporting if self.tenant_view is not None else set()

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
