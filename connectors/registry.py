"""What connectors know about devices: the compacted ``fleetstream.registry`` topic, read into memory.

The control plane publishes one ``RegistryEntry`` per device (key ``tenant:device``, a tombstone deletes).
Every connector process reads the whole topic from the beginning and then follows it, so a device
provisioned or suspended a moment ago is known here a moment later, without a call to the control plane
on the data path (adr/0001: Kafka is the only road)."""

from __future__ import annotations

import logging
import time

from runtime.compacted import CompactedTable
from runtime.kafka import KafkaLike
from schemas import codec, split_key, topics

log = logging.getLogger(__name__)

ALLOWED_STATUSES = frozenset({"provisioned", "active"})


class DeviceRegistry:
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param name: used in the consumer's client id."""

    def __init__(self, kafka: KafkaLike, name: str = "connector"):
        # the latest entry per ``tenant:device`` (runtime.compacted, adr/0125); offsets are never committed:
        # every process rebuilds the whole view on start
        self._entries = CompactedTable(kafka, topics.REGISTRY.name, name="registry", key=_device_key,
                                       decode=codec("registry_entry").decode, on_caught_up=self._known,
                                       group_id=f"fleetstream-registry-{name}-{time.time_ns()}",
                                       client_id=f"fleetstream-registry-{name}")

    def start(self) -> DeviceRegistry:
        self._entries.start()
        return self

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once everything the topic held at start-up has been read."""
        return self._entries.wait_caught_up(timeout)

    def stop(self) -> None:
        self._entries.stop()

    def get(self, tenant_id: str, device_id: str) -> dict | None:
        return self._entries.get(f"{tenant_id}:{device_id}")

    def jwt_key(self, tenant_id: str, device_id: str, kid: str) -> tuple[dict, str] | None:
        """The device's entry and its registered JWT public key with this id. Keys are looked up only within
        the device the token names, never across tenants (adr/0106)."""
        entry = self.get(tenant_id, device_id)
        if entry is None:
            return None
        pem = next((p for p in entry.get("jwt_public_keys", []) if _kid(p) == kid), None)
        return (entry, pem) if pem else None

    def __len__(self) -> int:
        return len(self._entries)

    def _known(self) -> None:
        log.info("registry: %d devices known", len(self._entries))


def _device_key(key: bytes) -> str:
    return ":".join(split_key(key))


def _kid(pem: str) -> str:
    from runtime.device_jwt import key_id

    try:
        return key_id(pem)
    except ValueError:
        return ""


class StaticRegistry:
    """A fixed set of entries, for one-process tools (the benchmark script) that do not read Kafka."""

    def __init__(self, entries: dict[str, dict] | None = None):
        self._entries = dict(entries or {})

    def start(self) -> StaticRegistry:
        return self

    def wait_ready(self, timeout: float = 0) -> bool:
        return True

    def stop(self) -> None:
        pass

    def get(self, tenant_id: str, device_id: str) -> dict | None:
        return self._entries.get(f"{tenant_id}:{device_id}")
