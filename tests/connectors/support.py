"""Helpers for connector tests: publish registry entries, read records (with headers) back from Kafka, run
an asyncio connector in a thread of the test process, and wait on it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from schemas import codec, codec_for, device_key, topics


def new_tenant_id() -> str:
    return str(uuid.uuid4())


def register_device(bootstrap: str, tenant_id: str, device_id: str, *, status: str = "active",
                    jwt_public_keys: list[str] | None = None) -> None:
    """Publishes the device's RegistryEntry as the control plane does (the compacted registry topic)."""
    rec = {"tenant_id": tenant_id, "device_id": device_id, "status": status, "device_type": None, "tags": [],
           "attributes": {}, "jwt_public_keys": jwt_public_keys or [], "version": time.time_ns(),
           "time": int(time.time() * 1000)}
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    p.produce(topics.REGISTRY.name, codec("registry_entry").encode(rec), device_key(tenant_id, device_id))
    assert p.flush(30) == 0, "registry entry not written"


def publish_command(bootstrap: str, tenant_id: str, device_id: str, params_json: str, *, protocol: str,
                    name: str = "write", timeout_ms: int = 30_000) -> str:
    command_id = uuid.uuid4().hex
    rec = {"tenant_id": tenant_id, "device_id": device_id, "command_id": command_id, "name": name,
           "params_json": params_json, "created_at": int(time.time() * 1000), "timeout_ms": timeout_ms,
           "expires_at": None, "attempt": 1, "idempotency_key": None, "protocol": protocol}
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    p.produce(topics.COMMANDS.name, codec("command").encode(rec), device_key(tenant_id, device_id))
    assert p.flush(30) == 0
    return command_id


def records(bootstrap: str, topic: str, match: Callable[[dict], bool], *, count: int = 1, timeout: float = 45,
            headers: bool = False, until: Callable[[list], bool] | None = None) -> list[Any]:
    """Records of ``topic`` (from the beginning) that ``match``; with ``headers`` each is (record, headers).
    Stops at ``count`` matches, or (with ``until``) as soon as ``until(found)`` holds."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, -2) for p in md.partitions])
        found, deadline = [], time.monotonic() + timeout
        finished = (lambda: until(found)) if until else (lambda: len(found) >= count)
        while not finished() and time.monotonic() < deadline:
            for m in c.consume(500, 0.3):
                if m.error():
                    continue
                rec = codec_for(m.value()).decode(m.value())
                if match(rec):
                    found.append((rec, dict(m.headers() or [])) if headers else rec)
        return found
    finally:
        c.close()


class LoopThread:
    """An asyncio loop in a daemon thread: runs connectors and protocol peers beside synchronous tests."""

    def __init__(self, name: str = "test-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def es256_keypair() -> tuple[str, str]:
    """A device's JWT signing key: (private key PKCS#8 PEM, public key PEM) on P-256."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())
