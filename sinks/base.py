"""Sink contract: batches per size and time; Kafka offsets are committed only after ``write`` succeeded.

``BatchingSink`` owns the consumer loop; a concrete sink implements ``write(records)`` only. A failed
write is retried (with backoff), so a sink whose store is away stops consuming rather than losing data. A
write the store refuses while it answers otherwise is a refused *record*, not an outage: the batch is halved
until the refused records stand alone, and each is set aside (counted, logged with its Kafka coordinates,
``set_aside``) after ``REFUSALS_TO_SET_ASIDE`` refusals in a row, so one record never holds back the others
(adr/0115). A set-aside or unreadable record is put on the dead-letter topic with the reason and its bytes
before the offset past it is committed (``sinks/dead_letters.py``), except records of that topic itself.

Each decoded record carries its Kafka coordinates (``kafka_topic``, ``kafka_partition``,
``kafka_offset``). After a crash between a write and its commit the batch is written again: stores keep
writes idempotent (replacing tables keyed by the record, adr/0007, 0061), and whatever a store derives from
its writes is derived again from the stored rows, never counted per insert (adr/0114). ``on_assigned``
tells the store each assigned partition's committed offset; ``maintain`` gives it the sink's thread after
each committed batch and when idle, for work that must follow the writes (the telemetry rollups).

A sink with ``raw = True`` gets the undecoded values instead (``write_raw``), for stores that decode a
whole batch more cheaply than Python does record by record (adr/0065).

A batch closes when it is full, or with whatever the consumer already fetched once a gap has passed since
the previous batch closed, or at the latest ``batch_ms`` after its *first* record arrived (adr/0212). The gap
is ``min_gap_ms`` or ``GAP_PER_WRITE`` times the previous write, whichever is longer: inserts per second stay
bounded (parts in the store, the fixed cost of each insert), a batch adds little latency while the store
keeps up, and batches grow towards ``batch_ms`` as writes slow down (load, a busy machine). An idle sink
waits for data without forming empty batches.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from runtime import observability as obs
from runtime.kafka import SINK_MEMBER, KafkaLike, clients
from schemas import ValueDeserializationError, codec, codec_for
from schemas import topics as platform_topics

from .dead_letters import DeadLetters

log = logging.getLogger(__name__)


class BaseSink(abc.ABC):
    @abc.abstractmethod
    def write(self, records: list[dict[str, Any]]) -> None:
        """Persist a batch; raise to have the same batch retried."""

    #: True: ``write_raw`` receives (value, partition, offset) of every record, undecoded
    raw: bool = False

    def write_raw(self, items: list[tuple[bytes, int, int]]) -> int:
        """Persist undecoded records; return how many were skipped as unreadable; raise to retry."""
        raise NotImplementedError

    def receive_time(self, value: bytes) -> int | None:
        """A raw record's receive time (epoch ms) for the end-to-end latency metric, if the sink can tell."""
        return None

    def on_assigned(self, committed: dict[tuple[str, int], int]) -> None:
        """Called on assignment with each newly assigned partition's committed offset (0 when the group has
        none): records from there on will be written (again). Raise to have it retried."""
        return None

    def answers(self) -> bool:
        """Whether the store is reachable now (a cheap probe). True tells a failed write apart from an
        outage: the store refused the data itself."""
        return False

    def set_aside(self, item: Any, error: BaseException) -> None:
        """Called for a record the store keeps refusing while it answers; the record is then skipped. The
        default only logs (the sink counts it); a sink may keep it elsewhere."""
        return None

    def maintain(self, partitions: list[tuple[str, int]], *, idle: bool) -> None:
        """Called on the sink's thread after every committed batch and whenever a wait for records ended
        empty (``idle``), with the partitions assigned now. A failure is logged and the call comes again."""
        return None


class BatchingSink(threading.Thread):
    """:param sink: what writes the decoded records.
    :param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param topic: Kafka topic (its values are ``record`` Avro records).
    :param topics: several topics instead of one; values are decoded by their schema fingerprint.
    :param commit_delay_ms: test only: a pause between write and commit, the window a crash test kills in.
    :param batch_ms: the longest a batch waits after its first record (a cap; batches close earlier).
    :param min_gap_ms: least time between two batches closing (default ``MIN_GAP_MS``, at most ``batch_ms``):
        the bound on inserts per second at any load."""

    def __init__(self, sink: BaseSink, *, kafka: KafkaLike, topic: str | None = None, record: str | None = None,
                 group_id: str, batch_size: int = 5000, batch_ms: int = 250, topics: list[str] | None = None,
                 commit_delay_ms: int = 0, consumer_config: dict | None = None, min_gap_ms: int | None = None):
        self.topics = topics or [topic]
        if sink.raw and len(self.topics) > 1:
            raise ValueError("a raw sink reads one topic: its records carry no topic name")
        super().__init__(name=f"sink-{'+'.join(self.topics)}", daemon=True)
        self.sink, self.topic = sink, self.topics[0]
        self.codec = codec(record) if record else None
        self.batch_size, self.batch_s = batch_size, batch_ms / 1000
        self.min_gap_s = min(self.MIN_GAP_MS if min_gap_ms is None else min_gap_ms, batch_ms) / 1000
        self._closed_at = 0.0  # monotonic time the previous batch closed
        self.commit_delay_s = commit_delay_ms / 1000
        # idle fetches wait 500 ms at the broker; a crashed member's partitions move after 10 s (SINK_MEMBER)
        self.consumer = clients(kafka).consumer(
            group_id, SINK_MEMBER,
            obs.consumer_stats_config(group_id),  # fleetstream_kafka_consumer_lag
            consumer_config or {})  # a hot topic's sink batches its fetches too (adr/0072)
        # a record of the dead-letter topic that cannot be stored is only counted and logged: a dead letter
        # about a dead letter would come back to this sink
        self.dead_letters = (None if platform_topics.DEAD_LETTER.name in self.topics
                             else DeadLetters(kafka, f"sinks.{type(sink).__name__}"))
        self._msgs: list = []  # the batch being written: a set-aside record's original bytes are found here
        self._stopping = threading.Event()
        self.stats = {"batches": 0, "records": 0, "undecodable": 0, "last_write_ms": 0.0, "maintain_errors": 0,
                      "kafka_errors": 0, "set_aside": 0}
        self.ready = threading.Event()

    def _on_assign(self, consumer, partitions) -> None:
        # no commit yet (a new group, or a crash before the first commit): reading starts at the beginning
        committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in self._committed(consumer, partitions)}
        if committed:
            log.info("assigned, from the committed offsets: %s", committed)
            self._until_done(lambda: self.sink.on_assigned(committed), "record the assignment")
        self.ready.set()

    def _committed(self, consumer, partitions) -> list:
        """The group's committed offsets; waits for them while the coordinator is away (a broker restart),
        because consuming without knowing them could write again what the store already holds."""
        delay = 0.5
        while True:
            try:
                return consumer.committed(partitions, timeout=30)
            except KafkaException as exc:
                self.stats["kafka_errors"] += 1
                log.warning("committed offsets unavailable (%s); retrying in %.1fs", exc, delay)
                if self._stopping.wait(delay):
                    raise
                delay = min(delay * 2, 10)

    def run(self) -> None:
        self.consumer.subscribe(self.topics, on_assign=self._on_assign)
        try:
            while not self._stopping.is_set():
                try:
                    self._one_batch()
                except KafkaException as exc:
                    # Kafka is away (a broker restart): the client reconnects by itself. A batch written but
                    # not committed is written again from the committed offset (raw rows replace themselves,
                    # rollups are recomputed: adr/0114) or committed with the next one.
                    self.stats["kafka_errors"] += 1
                    log.warning("%s: %s; carrying on once Kafka answers", self.name, exc)
                    self._stopping.wait(1.0)
            self._maintain(idle=True)  # a clean stop leaves the store's derived data current
        finally:
            self.consumer.close()
            if self.dead_letters is not None:
                self.dead_letters.close()

    def _maintain(self, *, idle: bool) -> None:
        try:
            self.sink.maintain([(tp.topic, tp.partition) for tp in self.consumer.assignment()], idle=idle)
        except Exception:
            # derived data lags; the store's reads do not depend on it being current (adr/0114)
            self.stats["maintain_errors"] += 1
            log.exception("sink maintenance failed; it runs again after the next batch")

    # longest wait for the first record of a batch: bounds how long a stop request waits
    IDLE_WAIT_S = 1.0
    # least time between two batches closing (adr/0212): at most 2 inserts a second per sink, whatever the load
    MIN_GAP_MS = 500
    # ... and at least this many times the previous write took: a chdb telemetry insert costs ~40 ms of CPU
    # before its first row (bench/results/2026-12-03-latency-budget.md), so when writes slow down (more rows, a
    # busy machine) batches grow instead of the inserts taking over the sink's thread (≤ 1/4 of it)
    GAP_PER_WRITE = 4

    def _collect(self) -> list:
        """One batch, or nothing if no record arrived within ``IDLE_WAIT_S``."""
        # consume() returns once it has the count asked for or the timeout passed: ask for one record, so
        # the batch clock starts when the first one arrives
        msgs = [m for m in self.consumer.consume(1, timeout=self.IDLE_WAIT_S) if not self._is_error(m)]
        if not msgs:
            return msgs
        now = time.monotonic()
        # the batch closes when the gap since the previous one has passed (or batch_ms, whichever is first),
        # with whatever the consumer holds by then: more records while the gap runs, never a wait after it
        gap = max(self.min_gap_s, self.GAP_PER_WRITE * self.stats["last_write_ms"] / 1000)
        close_at = min(now + self.batch_s, max(now, self._closed_at + gap))
        while len(msgs) < self.batch_size and not self._stopping.is_set():
            left = close_at - time.monotonic()
            msgs.extend(m for m in self.consumer.consume(self.batch_size - len(msgs), timeout=max(0.0, left))
                        if not self._is_error(m))
            if left <= 0:
                break
        self._closed_at = time.monotonic()
        return msgs

    def _one_batch(self) -> None:
        msgs = self._msgs = self._collect()
        if not msgs:
            if not self._stopping.is_set():
                self._maintain(idle=True)
            return
        if self.sink.raw:
            items = self._fresh_raw(msgs)
            written = 0
            if items:
                bad = self._write_until_done(items, raw=True)
                self.stats["undecodable"] += bad
                written = len(items) - bad
        else:
            records = self._decoded(msgs)
            written = len(records)
            if records:
                self._write_until_done(records)
        if self.commit_delay_s:
            log.info("wrote %d records; commit in %.1fs", written, self.commit_delay_s)
            self._stopping.wait(self.commit_delay_s)
        offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            offsets[(m.topic(), m.partition())] = m.offset() + 1
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        self.stats["batches"] += 1
        self.stats["records"] += written
        self._maintain(idle=False)

    @staticmethod
    def _fresh_raw(msgs: list) -> list[tuple[bytes, int, int]]:
        return [(m.value(), m.partition(), m.offset()) for m in msgs]

    def _decoded(self, msgs: list) -> list[dict]:
        records = []
        for m in msgs:
            try:
                rec = (self.codec or codec_for(m.value())).decode(m.value())
                rec.update(kafka_topic=m.topic(), kafka_partition=m.partition(), kafka_offset=m.offset())
                records.append(rec)
            except ValueDeserializationError as exc:
                # only producers of this platform write here; count, dead-letter and skip what cannot be read
                self.stats["undecodable"] += 1
                log.error("skipping undecodable record %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
                self._dead_letter(m.topic(), m.partition(), m.offset(), m.value() or b"", "undecodable_record",
                                  f"the sink cannot decode this record: {exc}")
        return records

    def _write_until_done(self, batch: list, raw: bool = False) -> int:
        """Writes ``batch``; returns how many of its records were skipped (unreadable or set aside)."""
        t0 = time.perf_counter()
        skipped = self._write_isolating(batch, raw)
        self.stats["last_write_ms"] = (time.perf_counter() - t0) * 1000
        _observe(self.sink, self.stats["last_write_ms"] / 1000, batch, raw)
        return skipped

    # refusals in a row, with the store answering each time, before a lone record is set aside: a passing
    # store hiccup does not cost a record
    REFUSALS_TO_SET_ASIDE = 4

    def _write_isolating(self, batch: list, raw: bool) -> int:
        delay, refusals = 0.2, 0
        while True:
            try:
                return (self.sink.write_raw(batch) if raw else self.sink.write(batch)) or 0
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                refused = self._store_answers()
                if refused and len(batch) > 1:
                    # the store is up and refuses this data: find the records it refuses, write the others
                    log.warning("sink %s: the store refused a batch of %d records (%s); halving it",
                                self.name, len(batch), exc)
                    half = len(batch) // 2
                    return self._write_isolating(batch[:half], raw) + self._write_isolating(batch[half:], raw)
                refusals = refusals + 1 if refused else 0
                if refusals >= self.REFUSALS_TO_SET_ASIDE:
                    self._set_aside(batch[0], exc, raw)
                    return 1
                log.exception("sink write of %d records failed; retrying in %.1fs", len(batch), delay)
                if self._stopping.wait(delay):
                    raise
                delay = min(delay * 2, 10)

    def _store_answers(self) -> bool:
        try:
            return bool(self.sink.answers())
        except Exception:
            return False

    def _set_aside(self, item, exc: BaseException, raw: bool) -> None:
        where = (f"[{item[1]}]@{item[2]}" if raw else
                 f"{item.get('kafka_topic')}[{item.get('kafka_partition')}]@{item.get('kafka_offset')}")
        self.stats["set_aside"] += 1
        obs.SINK_SET_ASIDE.labels(sink=type(self.sink).__name__).inc()
        log.error("sink %s: the store refuses record %s (%r); set aside, the records after it carry on",
                  self.name, where, exc)
        try:
            self.sink.set_aside(item, exc)
        except Exception:
            log.exception("sink %s: keeping the set-aside record %s failed", self.name, where)
        if raw:
            value, partition, offset = item[0], item[1], item[2]
            topic, tenant_id, device_id = self.topic, None, None
        else:
            topic, partition, offset = item.get("kafka_topic"), item.get("kafka_partition"), item.get("kafka_offset")
            value = next((m.value() for m in self._msgs
                          if (m.topic(), m.partition(), m.offset()) == (topic, partition, offset)), b"")
            tenant_id, device_id = item.get("tenant_id"), item.get("device_id")
        self._dead_letter(topic, partition, offset, value or b"", "store_refused",
                          f"the store keeps refusing this record: {exc!r}", tenant_id, device_id)

    def _dead_letter(self, topic: str, partition: int, offset: int, value: bytes, code: str, reason: str,
                     tenant_id: str | None = None, device_id: str | None = None) -> None:
        """Until Kafka has it: the batch is committed only after this returns (a stop ends the retries, and
        the uncommitted batch is read again)."""
        if self.dead_letters is None:
            return
        self._until_done(lambda: self.dead_letters.send(
            topic=topic, partition=partition, offset=offset, raw=value, code=code, reason=reason,
            tenant_id=tenant_id if isinstance(tenant_id, str) else None,
            device_id=device_id if isinstance(device_id, str) else None), "dead-letter a record")

    def _until_done(self, step, what: str):
        """Retries ``step`` with backoff until it succeeds; a stop request ends the retries with the error."""
        delay = 0.2
        while True:
            try:
                return step()
            except Exception:
                log.exception("sink %s failed; retrying in %.1fs", what, delay)
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

    def signal_stop(self) -> None:
        """Asks the sink to finish its batch and stop, without waiting: a process stopping several sinks
        signals them all first, so their last waits run side by side."""
        self._stopping.set()

    def stop(self, timeout: float = 10) -> None:
        self.signal_stop()
        self.join(timeout)


def _observe(sink: BaseSink, seconds: float, batch: list, raw: bool) -> None:
    name = type(sink).__name__
    if not raw:
        obs.observe_sink_batch(name, seconds, batch)
        return
    # the same metrics without decoding: the batch's first record stands for its oldest
    obs.SINK_BATCH_SECONDS.labels(sink=name).observe(seconds)
    obs.SINK_RECORDS.labels(sink=name).inc(len(batch))
    first = sink.receive_time(batch[0][0])
    if first is not None:
        obs.E2E_LATENCY_SECONDS.labels(sink=name).observe(max(0.0, time.time() - first / 1000))
