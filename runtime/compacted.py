"""Compacted topics followed into memory (adr/0125): the one follower behind the connectors' device registry,
the stream workers' registry, tenant and rule views, and the gateway's view of the agents' state.

A follower reads its topics from the beginning with a plain consumer (assigned partitions, no group
membership, nothing committed, so every start rebuilds the whole view) and keeps following them on its own
thread. ``caught_up`` is set once every partition has been read up to the high watermark it had when the
follower started: before that, "not in the view" means nothing. ``sync`` is a read-your-writes barrier up to
the topics' ends as they are now (independent consumers can otherwise see a record written after an entry
before the entry itself).

``CompactedFollower`` hands every record, tombstones included, to ``apply`` (a callback or an override);
``CompactedTable`` keeps the latest decoded value per key on top of it, a tombstone deleting its key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from .kafka import READER, KafkaLike, clients

log = logging.getLogger(__name__)

Record = Callable[[str, bytes | None, bytes | None], None]  # (topic, key, value); value None: a tombstone
TopicPartitionKey = tuple[str, int]


class CompactedFollower:
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param topics: the compacted topics followed, all by one consumer on one thread.
    :param name: the thread's name and the prefix of its log lines.
    :param on_record: called on the follower's thread for every record; or override ``apply``.
    :param on_caught_up: called once on the follower's thread when ``caught_up`` is set; or override it.
    :param group_id: the consumer's group id (never joined, nothing committed); ``fleetstream-<name>``.
    :param client_id: the consumer's client id, when its use names one.
    :param batch: records per ``consume`` call. :param poll_s: longest wait of one ``consume`` call."""

    def __init__(self, kafka: KafkaLike, topics: Iterable[str], *, name: str, on_record: Record | None = None,
                 on_caught_up: Callable[[], None] | None = None, group_id: str | None = None,
                 client_id: str | None = None, batch: int = 500, poll_s: float = 0.2):
        self.kafka, self.topics, self.name = clients(kafka), list(topics), name
        self.group_id, self.client_id = group_id or f"fleetstream-{name}", client_id
        self.batch, self.poll_s = batch, poll_s
        self._on_record, self._on_caught_up = on_record, on_caught_up
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._positions: dict[TopicPartitionKey, int] = {}  # next offset to read, per partition
        self._advanced = threading.Condition()
        self._probe = None  # a second consumer for sync(): the follower's own is busy on its thread
        self._probe_lock = threading.Lock()

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops following: the thread leaves within one ``poll_s`` and closes its consumer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None

    def wait_caught_up(self, timeout: float | None = None) -> bool:
        return self.caught_up.wait(timeout)

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if self._on_record is not None:
            self._on_record(topic, key, value)

    def on_caught_up(self) -> None:
        if self._on_caught_up is not None:
            self._on_caught_up()

    def sync(self, timeout: float = 2.0) -> bool:
        """Waits until everything on the topics now has been read; False if it was not within ``timeout``."""
        try:
            ends = self._ends(timeout)
        except KafkaException as exc:
            log.warning("%s sync: cannot read the end offsets: %s", self.name, exc)
            return False
        with self._advanced:
            return self._advanced.wait_for(
                lambda: all(self._positions.get(tp, -1) >= hi for tp, hi in ends.items() if hi > 0), timeout)

    # -- the follower's thread ------------------------------------------------------------------------------
    def _ends(self, timeout: float) -> dict[TopicPartitionKey, int]:
        with self._probe_lock:
            if self._probe is None:
                self._probe = self.kafka.consumer(f"{self.group_id}-probe", READER, client_id=self.client_id)
            return {tp: hi for tp, (_lo, hi) in _watermarks(self._probe, self.topics, timeout).items()}

    def _run(self) -> None:
        try:
            c = self.kafka.consumer(self.group_id, READER, client_id=self.client_id)
        except Exception:
            log.exception("%s: cannot create its consumer", self.name)
            return
        try:
            marks = self._wait_for_topics(c)
            if marks is None:
                return
            c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in marks])
            ends = {tp: hi for tp, (_lo, hi) in marks.items()}
            with self._advanced:
                self._positions.update({tp: lo for tp, (lo, _hi) in marks.items()})
            pending = {tp for tp, (lo, hi) in marks.items() if hi > lo}  # partitions with records to read
            if not pending:
                self._set_caught_up()
            while not self._stop.is_set():
                got = c.consume(self.batch, self.poll_s)
                for m in got:
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("%s: %s", self.name, m.error())
                        continue
                    tp = (m.topic(), m.partition())
                    self._apply(m.topic(), m.key(), m.value())
                    self._positions[tp] = m.offset() + 1
                    if tp in pending and m.offset() + 1 >= ends[tp]:
                        pending.discard(tp)
                        if not pending:
                            self._set_caught_up()
                if got:
                    with self._advanced:
                        self._advanced.notify_all()
        except Exception:  # a dead follower must be loud: its view stops changing
            log.exception("%s stopped", self.name)
        finally:
            c.close()

    def _wait_for_topics(self, c) -> dict[TopicPartitionKey, tuple[int, int]] | None:
        # a broker that has just started, or a just-created topic, answers "not leader" for a moment
        attempt = 0
        while True:
            try:
                return _watermarks(c, self.topics, 30)
            except KafkaException as exc:
                attempt += 1
                log.warning("%s: waiting for its topics (%d): %s", self.name, attempt, exc)
                if self._stop.wait(min(0.2 * attempt, 1.0)):
                    return None

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        try:
            self.apply(topic, key, value)
        except Exception:  # one bad record must not stop the view
            log.exception("%s: skipping a record on %s (key %r)", self.name, topic, key)

    def _set_caught_up(self) -> None:
        self.caught_up.set()
        self.on_caught_up()


class CompactedTable(CompactedFollower):
    """The latest value per key of one compacted topic. ``key`` and ``decode`` turn a record's key and value
    into what is kept; a tombstone deletes its key; a record without a key, or whose key or value does not
    decode, is skipped with a warning (a key's previous value stays). ``on_change(key, value)`` is called on the
    follower's thread after every change, with None for a deletion. Other parameters: ``CompactedFollower``'s."""

    def __init__(self, kafka: KafkaLike, topic: str, *, name: str, key: Callable[[bytes], Hashable] = bytes,
                 decode: Callable[[bytes], Any] = bytes, on_change: Callable[[Any, Any], None] | None = None,
                 **kw: Any):
        super().__init__(kafka, [topic], name=name, **kw)
        self._key, self._decode, self._on_change = key, decode, on_change
        self._values: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self._values.get(key, default)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def snapshot(self) -> dict[Hashable, Any]:
        with self._lock:
            return dict(self._values)

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            k = self._key(key)
            v = None if value is None else self._decode(value)
        except Exception as exc:
            log.warning("%s: skipping undecodable entry %r: %s", self.name, key, exc)
            return
        with self._lock:
            if value is None:
                if self._values.pop(k, _ABSENT) is _ABSENT:
                    return  # a tombstone for a key never seen (or already gone) changes nothing
            else:
                self._values[k] = v
        if self._on_change is not None:
            self._on_change(k, v)


_ABSENT = object()


def _watermarks(c, names: list[str], timeout: float) -> dict[TopicPartitionKey, tuple[int, int]]:
    """(low, high) watermark of every partition of the topics. A topic that does not exist has no partitions
    here: it is not followed (the platform creates its topics before it starts its processes)."""
    marks = {}
    for name in names:
        md = c.list_topics(name, timeout=timeout).topics[name]
        for p in md.partitions:
            marks[(name, p)] = c.get_watermark_offsets(TopicPartition(name, p), timeout=min(timeout, 10))
    return marks
