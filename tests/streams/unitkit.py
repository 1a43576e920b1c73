"""What the agents' unit tests drive a unit with instead of Faust (adr/0123): a dict as the table that
records its writes, messages as plain tuples, and a check that what a unit emits encodes as its topic's
Avro record (as the wiring's ``Outbox`` will)."""

from __future__ import annotations

from typing import Any, NamedTuple

from schemas import codec, device_key


class MemoryState(dict):
    """A ``units.State`` over a dict; ``writes`` lists each ``put`` as (partition, key)."""

    def __init__(self):
        super().__init__()
        self.writes: list[tuple[int, Any]] = []

    def put(self, partition: int, key: Any, value: Any) -> None:
        self[key] = value
        self.writes.append((partition, key))


class Msg(NamedTuple):
    """A Kafka message as a unit reads it (``units.Message``, ``bundles.Reading``)."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    rec: dict | None = None
    offset: int = 0


def encoded(record_type: str, record: dict, topic: str, *, key: bytes | None = None,
            partition: int = 0, offset: int = 0) -> Msg:
    """A message carrying ``record`` encoded as ``record_type``, keyed by its tenant and device."""
    key = key if key is not None else device_key(record["tenant_id"], record["device_id"])
    return Msg(topic, partition, key, codec(record_type).encode(record), offset=offset)


def check_encodes(emits, record_types: dict[str, str]) -> None:
    """Every emitted record encodes as its topic's record type (what ``units.Outbox`` does with it)."""
    for e in emits:
        codec(record_types[e.topic]).encode(e.record)
