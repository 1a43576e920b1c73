"""A consume → process → produce loop on librdkafka, one batch at a time, at least once (adr/0057).

Faust hands a stream one event at a time through its conductor, queues and processors, and each
``await topic.send`` goes through aiokafka's Python produce path: 260–630 µs per record in the validate
agent (bench/results/2026-11-26-summary.md). This loop takes whatever the consumer has queued (up to
``batch``), hands the whole batch to ``process``, produces the result through librdkafka, waits once for
every delivery, and only then commits the batch's offsets. A crash before the commit re-reads the batch
(duplicates are possible, losses are not); the idempotent producer keeps each partition's order across
retries, so a device's records leave in the order they came.

It runs on its own thread in the streams worker: librdkafka does the network work on its own threads, so
the Python cost per record is the decode, the checks and one ``produce`` call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Message, Producer, TopicPartition

from runtime.kafka import BATCH_PRODUCER, PIPE_CONSUMER, READER, KafkaLike, clients

log = logging.getLogger(__name__)

Output = tuple  # (topic, key, value) or (topic, key, value, partition)
Process = Callable[[Sequence[Message]], list[Output]]


class DeliveryFailed(RuntimeError):
    pass


class BatchPipe:
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param group: consumer group of the loop.
    :param legacy_group: a group that consumed ``source`` before (the Faust app's); where this loop's group
        has no committed offset for a partition, it starts where that group stopped instead of the
        beginning, so switching a running installation over re-reads nothing.
    :param before_start: runs on the loop's thread before it joins the group (e.g. wait for a view).
    :param on_failure: runs on the loop's thread after a batch failed, before it is read again.
    :param producer_config: extra librdkafka settings (tests shorten ``message.timeout.ms``)."""

    def __init__(self, kafka: KafkaLike, source: str, group: str, process: Process, *, batch: int = 5000,
                 linger_s: float = 0.0, legacy_group: str | None = None, before_start: Callable[[], None] | None = None,
                 on_failure: Callable[[], None] | None = None, name: str = "batch-pipe",
                 producer_config: dict | None = None):
        self.kafka, self.source, self.group, self.process = clients(kafka), source, group, process
        self.batch, self.linger_s, self.legacy_group, self.before_start = batch, linger_s, legacy_group, before_start
        self.on_failure, self.producer_config = on_failure, producer_config or {}
        self.stats = {"batches": 0, "records": 0, "produced": 0, "restarts": 0, "cpu_s": 0.0}
        # per batch: ms from its oldest record's Kafka timestamp to its commit (what the stage itself adds)
        self.lags_ms: deque[int] = deque(maxlen=100_000)
        self.slowest: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BatchPipe:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Finishes the batch in hand (produced, confirmed, committed) and leaves the group."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        if self.before_start is not None:
            self.before_start()
        while not self._stop.is_set():
            try:
                self._serve()
            except Exception:
                # the batch in hand was not committed: a fresh consumer re-reads it from the committed offsets
                self.stats["restarts"] += 1
                log.exception("%s: restarting from the committed offsets", self._thread.name)
                if self.on_failure is not None:
                    self.on_failure()
                self._stop.wait(1)

    def _serve(self) -> None:
        # one fetch per batch of records under load, not one per record (adr/0072)
        consumer = self.kafka.consumer(self.group, PIPE_CONSUMER)
        failures: list[KafkaError] = []
        # linger 100 ms: every batch ends in flush() (adr/0072); only failures are reported
        producer = self.kafka.producer(BATCH_PRODUCER, {**self.producer_config,
                                                        "on_delivery": lambda err, msg: failures.append(err)})
        consumer.subscribe([self.source], on_assign=self._on_assign)
        try:
            while not self._stop.is_set():
                first = consumer.poll(0.2)
                if first is None:
                    continue
                # what else arrives within ``linger_s``: batches grow with the load, and at low rates the
                # per-batch costs (a delivery round trip, a commit, one bundle event per partition for
                # device-activity) are shared by more records for a few ms of latency
                msgs = [first, *consumer.consume(self.batch - 1, self.linger_s)]
                self._handle(consumer, producer, msgs, failures)
        finally:
            producer.flush(10)
            consumer.close()

    def _handle(self, consumer: Consumer, producer: Producer, msgs: list[Message], failures: list) -> None:
        good, ends = [], {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consume error %s", self._thread.name, err)
                continue
            good.append(m)
            ends[m.partition()] = m.offset() + 1
        if not good:
            return
        t0 = time.perf_counter()
        out = self.process(good)
        produce = producer.produce
        for o in out:
            while True:
                try:
                    if len(o) == 3:
                        produce(o[0], o[2], o[1])
                    else:
                        produce(o[0], o[2], o[1], partition=o[3])
                    break
                except BufferError:
                    producer.poll(0.05)
        t1 = time.perf_counter()
        if producer.flush(30) or failures:
            raise DeliveryFailed(f"{len(failures)} records not confirmed: {failures[:3]}")
        t2 = time.perf_counter()
        # the slowest batch's phases since the last read: where a latency tail comes from
        if t2 - t0 > self.slowest.get("total_ms", 0) / 1000:
            self.slowest = {"total_ms": round((t2 - t0) * 1000), "process_and_produce_ms": round((t1 - t0) * 1000),
                            "delivery_wait_ms": round((t2 - t1) * 1000), "records": len(good)}
        self._commit(consumer, ends)
        ts_type, ts = good[0].timestamp()
        if ts_type != TIMESTAMP_NOT_AVAILABLE:
            self.lags_ms.append(time.time_ns() // 1_000_000 - ts)
        self.stats["batches"] += 1
        self.stats["records"] += len(good)
        self.stats["produced"] += len(out)
        self.stats["cpu_s"] = time.thread_time()  # this thread's CPU: what validate costs per record

    def _commit(self, consumer: Consumer, ends: dict[int, int]) -> None:
        consumer.commit(offsets=[TopicPartition(self.source, p, o) for p, o in ends.items()], asynchronous=True)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.legacy_group:
            try:
                self._start_at_legacy_offsets(consumer, partitions)
            except Exception:
                log.exception("%s: could not read the offsets of group %s", self._thread.name, self.legacy_group)
        consumer.assign(partitions)

    def _start_at_legacy_offsets(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        missing = [TopicPartition(tp.topic, tp.partition) for tp in partitions if mine.get(tp.partition, -1) < 0]
        if not missing:
            return
        old = self.kafka.consumer(self.legacy_group, READER)
        try:
            theirs = {tp.partition: tp.offset for tp in old.committed(missing, timeout=10)}
        finally:
            old.close()
        for tp in partitions:
            if mine.get(tp.partition, -1) < 0 and theirs.get(tp.partition, -1) >= 0:
                tp.offset = theirs[tp.partition]
                log.info("%s: partition %d starts at offset %d of group %s", self._thread.name, tp.partition,
                         tp.offset, self.legacy_group)
