"""A compacted topic followed into memory by every streams worker (the registry, the rules).

Each worker reads the whole topic from the beginning with a plain consumer (no consumer group) and keeps
following it. ``caught_up`` turns true once the high-water marks seen at start have been read: before that,
"not in the view" means nothing. ``sync`` is a read-your-writes barrier up to the topic's end as it is now.
Subclasses implement ``apply(key, value)`` only.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from runtime.kafka import READER, KafkaLike, clients

log = logging.getLogger(__name__)


class CompactedTopicView:
    batch = 1000

    def __init__(self, kafka: KafkaLike, topic: str, name: str):
        self.kafka, self.topic, self.name = clients(kafka), topic, name
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._positions: dict[int, int] = {}
        self._advanced = threading.Condition()
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        raise NotImplementedError

    def on_caught_up(self) -> None:
        """Called once, on the view's thread, when the start-time end of the topic has been read."""

    def sync(self, timeout: float = 2.0) -> bool:
        """Waits until the view has read everything on the topic now (independent consumers can otherwise
        see a record that was written after this topic's entry before the entry itself)."""
        try:
            ends = self._ends(timeout)
        except KafkaException as exc:
            log.warning("%s sync: cannot read the topic's end offsets: %s", self.name, exc)
            return False
        with self._advanced:
            return self._advanced.wait_for(
                lambda: all(self._positions.get(p, 0) >= hi for p, hi in ends.items() if hi > 0), timeout)

    def _ends(self, timeout: float) -> dict[int, int]:
        with self._probe_lock:
            if self._probe is None:
                self._probe = self.kafka.consumer(f"fleetstream-{self.name}-probe", READER)
            md = self._probe.list_topics(self.topic, timeout=timeout).topics[self.topic]
            return {p: self._probe.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)[1]
                    for p in md.partitions}

    def _run(self) -> None:
        c = self.kafka.consumer(f"fleetstream-{self.name}", READER)
        try:
            while True:  # a broker that has just started may not lead its partitions yet
                try:
                    md = c.list_topics(self.topic, timeout=30).topics[self.topic]
                    tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in md.partitions]
                    ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
                    break
                except KafkaException as exc:
                    log.warning("%s: waiting for the topic: %s", self.name, exc)
                    if self._stop.wait(1):
                        return
            c.assign(tps)
            pending = {p for p, hi in ends.items() if hi > 0}
            if not pending:
                self.caught_up.set()
            while not self._stop.is_set():
                got = c.consume(self.batch, 0.2)
                for m in got:
                    if m.error():
                        continue
                    self.apply(m.key(), m.value())
                    self._positions[m.partition()] = m.offset() + 1
                    if pending and m.offset() + 1 >= ends.get(m.partition(), 0):
                        pending.discard(m.partition())
                        if not pending:
                            self.caught_up.set()
                            self.on_caught_up()
                if got:
                    with self._advanced:
                        self._advanced.notify_all()
        except Exception:
            log.exception("%s stopped", self.name)
        finally:
            c.close()
