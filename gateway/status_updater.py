"""Keeps ``devices.online`` / ``last_seen`` in Postgres from ``fleetstream.device-events``, in batches.

Connection events (CONNECTED/ONLINE, DISCONNECTED/OFFLINE) arrive far more often than anything else the
control plane writes; one UPDATE per event would make Postgres the bottleneck of a reconnect storm.
The updater keeps only the latest event per device within a batch, writes one statement per tenant,
and commits Kafka offsets after Postgres has the batch (a crash replays, the write is idempotent).
A device's first connection moves it from ``provisioned`` to ``active``. Sub-devices of gateways and
Sparkplug edge nodes the connector announces get their control-plane rows first (``sub_devices.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid

from confluent_kafka import KafkaException

from runtime.kafka import MANUAL_COMMIT, KafkaLike, clients
from schemas import codec, topics

log = logging.getLogger(__name__)

ONLINE = frozenset({"CONNECTED", "ONLINE"})
OFFLINE = frozenset({"DISCONNECTED", "OFFLINE"})


def latest_by_device(events: list[dict]) -> dict[str, list[tuple[str, bool, dt.datetime]]]:
    """Connection events → per tenant, the latest ``(device_id, online, at)`` of each device."""
    latest: dict[tuple[str, str], tuple[int, bool]] = {}
    for e in events:
        kind = e.get("event_type")
        if kind not in ONLINE and kind not in OFFLINE:
            continue
        if not is_uuid(e.get("tenant_id", "")):  # not a tenant: would fail the whole batch forever
            continue
        k = (e["tenant_id"], e["device_id"])
        if k not in latest or e["time"] >= latest[k][0]:
            latest[k] = (e["time"], kind in ONLINE)
    out: dict[str, list[tuple[str, bool, dt.datetime]]] = {}
    for (tenant, device), (ms, online) in latest.items():
        out.setdefault(tenant, []).append((device, online, dt.datetime.fromtimestamp(ms / 1000, dt.UTC)))
    return out


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


class StatusUpdater(threading.Thread):
    """:param admin: the control plane (its pool and registry publisher).
    :param kafka: the process's Kafka clients. :param batch: events per poll. :param wait_s: longest wait for a batch."""

    def __init__(self, admin, kafka: KafkaLike, *, group_id: str = "fleetstream-status-updater",
                 batch: int = 2000, wait_s: float = 0.5, sub_devices_per_tenant: int = 10_000):
        super().__init__(name="status-updater", daemon=True)
        self.admin = admin
        self.batch, self.wait_s = batch, wait_s
        self.per_tenant = sub_devices_per_tenant
        self.stats = {"events": 0, "writes": 0, "activated": 0, "errors": 0, "sub_devices": 0,
                      "sub_devices_refused": 0}
        self._codec = codec("device_event")
        self._stopping = threading.Event()
        self._consumer = clients(kafka).consumer(group_id, MANUAL_COMMIT, client_id="fleetstream-status-updater")

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(10)

    def run(self) -> None:
        from gateway.identity.provisioning import record_connectivity
        from gateway.sub_devices import register, sightings

        self._consumer.subscribe([topics.DEVICE_EVENTS.name])
        try:
            while not self._stopping.is_set():
                msgs = self._consumer.consume(self.batch, self.wait_s)
                events = []
                for m in msgs:
                    if m.error():
                        continue
                    try:
                        events.append(self._codec.decode(m.value()))
                    except Exception:  # another writer's bad record must not stop status tracking
                        log.warning("undecodable device event at %s/%s", m.partition(), m.offset())
                if not msgs:
                    continue
                changes = latest_by_device(events)
                seen = sightings(events)
                while not self._stopping.is_set():
                    try:
                        if seen:  # first: a sub-device's ONLINE in this batch must find its row
                            done = register(self.admin, seen, per_tenant=self.per_tenant)
                            self.stats["sub_devices"] += done["created"]
                            self.stats["sub_devices_refused"] += done["refused"]
                            seen = {}
                        self.stats["activated"] += record_connectivity(self.admin, changes)
                        break
                    except Exception:
                        self.stats["errors"] += 1
                        log.exception("status update failed; retrying")
                        time.sleep(1)
                self.stats["events"] += len(events)
                self.stats["writes"] += len(changes)
                try:
                    self._consumer.commit(asynchronous=False)
                except KafkaException as exc:
                    log.warning("status updater commit failed: %s", exc)
        finally:
            self._consumer.close()
