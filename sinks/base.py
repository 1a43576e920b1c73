"""Sink contract: batches per size and time; Kafka offsets are committed only after ``write`` succeeded.

``BatchingSink`` owns the consumer loop; a concrete sink implements ``write(records)`` only. A failed
write is retried (with backoff) and never skipped, so a sink that cannot write stops consuming rather
than losing data.

Each decoded record carries its Kafka coordinates (``kafka_topic``, ``kafka_partition``,
``kafka_offset``). When partitions are assigned, the sink asks ``written_up_to`` how far the store already
holds each partition beyond the committed offset, and skips those records: a batch written just before a
crash (write done, commit not) is then never written twice (adr/0060).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from fleetstream import observability as obs
from schemas import ValueDeserializationError, codec, codec_by_fingerprint

log = logging.getLogger(__name__)


class BaseSink(abc.ABC):
    @abc.abstractmethod
    def write(self, records: list[dict[str, Any]]) -> None:
        """Persist a batch; raise to have the same batch retried."""

    def written_up_to(self, committed: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Called on assignment with each partition's committed offset; returns the highest offset the
        store already holds at or beyond it (partitions absent: nothing). Default: the store cannot tell."""
        return {}


class BatchingSink(threading.Thread):
    """:param sink: what writes the decoded records.
    :param topic: Kafka topic (its values are ``record`` Avro records).
    :param topics: several topics instead of one; values are decoded by their schema fingerprint.
    :param commit_delay_ms: test only: a pause between write and commit, the window a crash test kills in."""

    def __init__(self, sink: BaseSink, *, bootstrap: str, topic: str | None = None, record: str | None = None,
                 group_id: str, batch_size: int = 5000, batch_ms: int = 250, topics: list[str] | None = None,
                 commit_delay_ms: int = 0):
        self.topics = topics or [topic]
        super().__init__(name=f"sink-{'+'.join(self.topics)}", daemon=True)
        self.sink, self.topic = sink, self.topics[0]
        self.codec = codec(record) if record else None
        self.batch_size, self.batch_s = batch_size, batch_ms / 1000
        self.commit_delay_s = commit_delay_ms / 1000
        self._skip: dict[tuple[str, int], int] = {}
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": False,
            "fetch.wait.max.ms": 50, "partition.assignment.strategy": "cooperative-sticky",
            # a crashed sink's partitions move to a live member after 10 s, not the 45 s default
            "session.timeout.ms": 10000,
            **obs.consumer_stats_config(group_id),  # fleetstream_kafka_consumer_lag
        })
        self._stopping = threading.Event()
        self.stats = {"batches": 0, "records": 0, "undecodable": 0, "skipped_written": 0, "last_write_ms": 0.0}
        self.ready = threading.Event()

    def _on_assign(self, consumer, partitions) -> None:
        # no commit yet (a new group, or a crash before the first commit): the store may hold from offset 0
        committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=30)}
        if committed:
            done = self.sink.written_up_to(committed)
            self._skip.update(done)
            if done:
                log.info("already written beyond the committed offsets, skipping: %s", done)
        self.ready.set()

    def run(self) -> None:
        self.consumer.subscribe(self.topics, on_assign=self._on_assign)
        try:
            while not self._stopping.is_set():
                self._one_batch()
        finally:
            self.consumer.close()

    def _one_batch(self) -> None:
        deadline = time.monotonic() + self.batch_s
        msgs = []
        while len(msgs) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = self.consumer.consume(self.batch_size - len(msgs), timeout=left)
            msgs.extend(m for m in got if not self._is_error(m))
            if self._stopping.is_set():
                break
        if not msgs:
            return
        records = []
        for m in msgs:
            tp = (m.topic(), m.partition())
            if tp in self._skip:
                if m.offset() <= self._skip[tp]:
                    self.stats["skipped_written"] += 1
                    continue
                del self._skip[tp]
            try:
                rec = (self.codec or codec_by_fingerprint(m.value())).decode(m.value())
                rec.update(kafka_topic=tp[0], kafka_partition=tp[1], kafka_offset=m.offset())
                records.append(rec)
            except ValueDeserializationError as exc:
                # only producers of this platform write here; count and skip what cannot be read
                self.stats["undecodable"] += 1
                log.error("skipping undecodable record %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
        if records:
            self._write_until_done(records)
            log.debug("wrote %d records", len(records))
        if self.commit_delay_s:
            log.info("wrote %d records; commit in %.1fs", len(records), self.commit_delay_s)
            self._stopping.wait(self.commit_delay_s)
        offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            offsets[(m.topic(), m.partition())] = m.offset() + 1
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        self.stats["batches"] += 1
        self.stats["records"] += len(records)

    def _write_until_done(self, records: list[dict]) -> None:
        delay = 0.2
        while True:
            t0 = time.perf_counter()
            try:
                self.sink.write(records)
                self.stats["last_write_ms"] = (time.perf_counter() - t0) * 1000
                obs.observe_sink_batch(type(self.sink).__name__, self.stats["last_write_ms"] / 1000, records)
                return
            except Exception:
                log.exception("sink write of %d records failed; retrying in %.1fs", len(records), delay)
                if self._stopping.wait(delay):
                    raise
                delay = min(delay * 2, 10)

    @staticmethod
    def _is_error(m) -> bool:
        err = m.error()
        if err is None:
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err)
        return True

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        self.join(timeout)
