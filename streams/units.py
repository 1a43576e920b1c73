"""The shape of a stream agent (adr/0123): a unit that decides, and ``register()`` that wires it to Faust.

A unit is a plain class: its inputs are the records (``Message``: what a handler reads of a Kafka
message), the state (``State``: a table read by key and written with an explicit partition) and the clock
(an epoch-ms argument, never read inside); its output is what must be sent (``Emit``: a record for a
topic, in order). It knows nothing of Faust, so a test drives it with a dict and a number.
``register()`` builds the table and topics, adapts them (``TableState``, ``Outbox``), reads the clock and
the partitions this worker owns, and hands the unit's output to the producer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import faust

from schemas import codec

from .tables import put


class Message(Protocol):
    """What a unit reads of a Kafka message (a Faust ``Message`` has these; the device-activity handlers
    get ``bundles.Reading``, which has all but the offset)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class State(Protocol):
    """An agent's table as its unit sees it: entries by key, written with the partition they belong to
    (the changelog partition, ``tables.put``)."""

    def get(self, key: Any) -> Any: ...
    def put(self, partition: int, key: Any, value: Any) -> None: ...
    def items(self) -> Iterable[tuple[Any, Any]]: ...


class Emit(NamedTuple):
    """A record a unit decided to send: topic name, Kafka key, the record (encoded by the wiring)."""

    topic: str
    key: bytes
    record: dict


class TableState:
    """A Faust table as a ``State``."""

    def __init__(self, table: faust.Table):
        self.table = table

    def get(self, key: Any) -> Any:
        return self.table.data.get(key)

    def put(self, partition: int, key: Any, value: Any) -> None:
        put(self.table, partition, key, value)

    def items(self) -> Iterable[tuple[Any, Any]]:
        return self.table.data.items()


class Outbox:
    """Sends a unit's ``Emit``s in order, each encoded with its topic's Avro record type."""

    def __init__(self, app: faust.App, record_types: dict[str, str]):
        self.topics = {name: (app.topic(name, key_type=bytes, value_type=bytes), codec(rtype))
                       for name, rtype in record_types.items()}

    async def send(self, emits: Sequence[Emit]) -> None:
        for topic, key, record in emits:
            t, c = self.topics[topic]
            await t.send(key=key, value=c.encode(record))
