"""Sink contract: batches per size and time; Kafka offsets are committed only after ``write`` succeeded.

``BatchingSink`` owns the consumer loop; a concrete sink implements ``write(records)`` only. A failed
write is retried (with backoff) and never skipped, so a sink that cannot write stops consuming rather
than losing data.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from schemas import ValueDeserializationError, codec

log = logging.getLogger(__name__)


class BaseSink(abc.ABC):
    @abc.abstractmethod
    def write(self, records: list[dict[str, Any]]) -> None:
        """Persist a batch; raise to have the same batch retried."""


class BatchingSink(threading.Thread):
    """:param sink: what writes the decoded records.
    :param topic: Kafka topic (its values are ``record`` Avro records)."""

    def __init__(self, sink: BaseSink, *, bootstrap: str, topic: str, record: str, group_id: str,
                 batch_size: int = 5000, batch_ms: int = 250):
        super().__init__(name=f"sink-{topic}", daemon=True)
        self.sink, self.topic, self.codec = sink, topic, codec(record)
        self.batch_size, self.batch_s = batch_size, batch_ms / 1000
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": False,
            "fetch.wait.max.ms": 50, "partition.assignment.strategy": "cooperative-sticky",
        })
        self._stop = threading.Event()
        self.stats = {"batches": 0, "records": 0, "undecodable": 0, "last_write_ms": 0.0}
        self.ready = threading.Event()

    def run(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=lambda *_: self.ready.set())
        try:
            while not self._stop.is_set():
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
            if self._stop.is_set():
                break
        if not msgs:
            return
        records = []
        for m in msgs:
            try:
                records.append(self.codec.decode(m.value()))
            except ValueDeserializationError as exc:
                # only producers of this platform write here; count and skip what cannot be read
                self.stats["undecodable"] += 1
                log.error("skipping undecodable record %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
        self._write_until_done(records)
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
                return
            except Exception:
                log.exception("sink write of %d records failed; retrying in %.1fs", len(records), delay)
                if self._stop.wait(delay):
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
        self._stop.set()
        self.join(timeout)
