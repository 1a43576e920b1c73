"""The device registry as every streams worker sees it: a table fed by the compacted
``fleetstream.registry`` topic (key ``tenant:device``, value ``RegistryEntry``).

Every worker needs every device's entry (validation of any partition may need any device after a
rebalance, and entries are small), so each worker reads the whole compacted topic into memory with a
plain consumer (no consumer group) and follows it. ``caught_up`` turns true once the high-water marks seen
at start have been read: before that, "not in the registry" means nothing (adr/0051).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

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


class RegistryView:
    """:param bootstrap: Kafka bootstrap servers.
    :param topic: the compacted registry topic (default ``fleetstream.registry``)."""

    def __init__(self, bootstrap: str, topic: str = topics.REGISTRY.name):
        self.bootstrap, self.topic = bootstrap, topic
        self.devices: dict[tuple[str, str], DeviceInfo] = {}
        self.tenants: dict[str, int] = {}  # entries per tenant: does the control plane publish for it?
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-view", daemon=True)
        self._positions: dict[int, int] = {}
        self._advanced = threading.Condition()
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()

    def start(self) -> RegistryView:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def lookup(self, tenant_id: str, device_id: str) -> DeviceInfo | None:
        return self.devices.get((tenant_id, device_id))

    def tenant_published(self, tenant_id: str) -> bool:
        return self.tenants.get(tenant_id, 0) > 0

    def sync(self, timeout: float = 2.0) -> bool:
        """Read-your-writes barrier: waits until the view has read everything on the registry topic now.

        The raw telemetry consumer and this view's consumer are independent, so a device's first reading can
        overtake its (already written) registry entry; callers use this before refusing a device as unknown.
        """
        try:
            ends = self._registry_ends(timeout)
        except KafkaException as exc:
            log.warning("registry sync: cannot read the registry's end offsets: %s", exc)
            return False
        with self._advanced:
            return self._advanced.wait_for(
                lambda: all(self._positions.get(p, 0) >= hi for p, hi in ends.items() if hi > 0), timeout)

    def _registry_ends(self, timeout: float) -> dict[int, int]:
        with self._probe_lock:
            if self._probe is None:
                self._probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fleetstream-registry-probe",
                                        "enable.auto.commit": False})
            md = self._probe.list_topics(self.topic, timeout=timeout).topics[self.topic]
            return {p: self._probe.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)[1]
                    for p in md.partitions}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
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

    def _run(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fleetstream-registry-view",
                      "enable.auto.commit": False, "enable.partition.eof": False})
        try:
            while True:  # a broker that has just started may not lead its partitions yet
                try:
                    md = c.list_topics(self.topic, timeout=30).topics[self.topic]
                    tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in md.partitions]
                    ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
                    break
                except KafkaException as exc:
                    log.warning("registry view: waiting for the topic: %s", exc)
                    if self._stop.wait(1):
                        return
            c.assign(tps)
            pending = {p for p, hi in ends.items() if hi > 0}
            if not pending:
                self.caught_up.set()
            while not self._stop.is_set():
                got = c.consume(1000, 0.2)
                for m in got:
                    if m.error():
                        continue
                    self.apply(m.key(), m.value())
                    self._positions[m.partition()] = m.offset() + 1
                    if pending and m.offset() + 1 >= ends.get(m.partition(), 0):
                        pending.discard(m.partition())
                        if not pending:
                            self.caught_up.set()
                            log.info("registry view caught up: %d devices", len(self.devices))
                if got:
                    with self._advanced:
                        self._advanced.notify_all()
        except Exception:
            log.exception("registry view stopped")
        finally:
            c.close()


def _int_or_none(v: str | None) -> int | None:
    try:
        return int(float(v)) if v else None
    except ValueError:
        return None
