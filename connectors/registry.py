"""What connectors know about devices: the compacted ``fleetstream.registry`` topic, read into memory.

The control plane publishes one ``RegistryEntry`` per device (key ``tenant:device``, a tombstone deletes).
Every connector process reads the whole topic from the beginning and then follows it, so a device
provisioned or suspended a moment ago is known here a moment later, without a call to the control plane
on the data path (adr/0001: Kafka is the only road)."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from runtime.kafka import READER, KafkaLike, clients
from schemas import codec, split_key, topics

log = logging.getLogger(__name__)

ALLOWED_STATUSES = frozenset({"provisioned", "active"})


class DeviceRegistry:
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param name: used in the consumer's client id."""

    def __init__(self, kafka: KafkaLike, name: str = "connector"):
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._codec = codec("registry_entry")
        # offsets are never committed: every process rebuilds the whole view on start
        self._consumer = clients(kafka).consumer(f"fleetstream-registry-{name}-{time.time_ns()}", READER,
                                                 client_id=f"fleetstream-registry-{name}")
        self._thread = threading.Thread(target=self._run, name="registry", daemon=True)

    def start(self) -> DeviceRegistry:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once everything the topic held at start-up has been read."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

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

    def _run(self) -> None:
        c = self._consumer
        try:
            md = c.list_topics(topics.REGISTRY.name, timeout=30).topics[topics.REGISTRY.name]
            parts = [TopicPartition(topics.REGISTRY.name, p, OFFSET_BEGINNING) for p in md.partitions]
            c.assign(parts)
            marks = self._watermarks(parts)
            ends = {p: hi for p, (_lo, hi) in marks.items()}
            positions = {p: lo for p, (lo, _hi) in marks.items()}
            self._check_caught_up(ends, positions)
            while not self._stop.is_set():
                for m in c.consume(500, 0.2):
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("registry consumer: %s", m.error())
                        continue
                    positions[m.partition()] = m.offset() + 1
                    self._apply(m.key(), m.value())
                if not self._ready.is_set():
                    self._check_caught_up(ends, positions)
        except Exception:  # a dead registry thread must be loud: every reading would be refused
            log.exception("registry consumer stopped")
        finally:
            c.close()

    def _watermarks(self, parts: list[TopicPartition]) -> dict[int, tuple[int, int]]:
        # a just-created topic answers "not leader" for a moment: retry rather than give up the view
        for attempt in range(60):
            try:
                return {p.partition: self._consumer.get_watermark_offsets(p, timeout=10) for p in parts}
            except KafkaException as exc:
                if self._stop.wait(min(0.2 * (attempt + 1), 2)):
                    raise
                log.info("registry: waiting for partition leaders: %s", exc)
        raise RuntimeError("registry topic partitions have no leader")

    def _check_caught_up(self, ends: dict[int, int], positions: dict[int, int]) -> None:
        if all(positions[p] >= end for p, end in ends.items()):
            self._ready.set()
            log.info("registry: %d devices known", len(self._entries))

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            k = ":".join(split_key(key))
            with self._lock:
                if value is None:
                    self._entries.pop(k, None)
                else:
                    self._entries[k] = self._codec.decode(value)
        except Exception as exc:  # one bad entry must not stop the view
            log.warning("registry: skipping undecodable entry %r: %s", key, exc)


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
