"""Publishes the control plane's view of each device to the compacted ``fleetstream.registry`` topic
(key ``tenant:device``), so stream agents and connectors enrich and enforce without calling Postgres.

Every device change publishes the device's whole current entry (never a delta): compaction keeps the
latest per device, and a consumer that starts from the beginning has the full registry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from typing import Any

from confluent_kafka import Producer

from schemas import codec, device_key, topics

log = logging.getLogger(__name__)


def registry_entry(device: dict, jwt_public_keys: list[str]) -> dict[str, Any]:
    """A ``RegistryEntry`` record from a ``devices`` row (attributes become strings: JSON for non-strings)."""
    attrs = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (device.get("attributes") or {}).items()}
    return {"tenant_id": str(device["tenant_id"]), "device_id": device["device_id"], "status": device["status"],
            "device_type": device.get("device_type"), "tags": list(device.get("tags") or []), "attributes": attrs,
            "jwt_public_keys": list(jwt_public_keys), "version": int(device.get("version") or 0),
            "time": _ms(device.get("updated_at"))}


def _ms(t: dt.datetime | None) -> int:
    return int(t.timestamp() * 1000) if t else time.time_ns() // 1_000_000


class RegistryPublisher:
    """One idempotent producer per process; ``publish`` is asynchronous, ``flush`` waits for delivery.

    :param bootstrap: Kafka bootstrap servers."""

    def __init__(self, bootstrap: str):
        self._codec = codec("registry_entry")
        self.failures = 0
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "linger.ms": 5, "client.id": "fleetstream-registry"})
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="registry-publisher", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failures += 1
            log.error("registry entry for %s not delivered: %s", msg.key(), err)

    def publish(self, entry: dict[str, Any]) -> None:
        value = self._codec.encode(entry)
        key = device_key(entry["tenant_id"], entry["device_id"])
        while True:
            try:
                self._producer.produce(topics.REGISTRY.name, value, key, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)

    def flush(self, timeout: float = 10.0) -> int:
        return self._producer.flush(timeout)

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._poller.join(2)
        del self._producer  # librdkafka keeps its connections until the handle is freed
