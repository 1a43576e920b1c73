"""Reading back what an SSE client missed: a short-lived consumer per resuming connection, from the offsets
after its Last-Event-ID up to each partition's high watermark, keeping only the device's records."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import TopicPartition

from runtime.kafka import READER, KafkaLike, clients

from .hub import LiveEvent, decode

MAX_SCANNED = 200_000  # records read per resume, across partitions; beyond that the client gets live data only
TIMEOUT_S = 20


def replay(kafka: KafkaLike, tenant_id: str, device_id: str, start: dict[tuple[str, int], int]) -> list[LiveEvent]:
    c = clients(kafka).consumer(f"fleetstream-replay-{uuid.uuid4().hex}", READER)
    try:
        ends, assign = {}, []
        for (topic, partition), offset in start.items():
            low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > max(offset, low):
                ends[(topic, partition)] = high
                assign.append(TopicPartition(topic, partition, max(offset, low)))
        if not assign:
            return []
        c.assign(assign)
        out, scanned, deadline = [], 0, time.monotonic() + TIMEOUT_S
        while ends and scanned < MAX_SCANNED and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                if m.error():
                    continue
                tp = (m.topic(), m.partition())
                end = ends.get(tp)
                if end is None or m.offset() >= end:
                    continue
                scanned += 1
                if m.offset() == end - 1:
                    del ends[tp]
                ev = decode(m.topic(), m.partition(), m.offset(), m.value())
                if ev is not None and ev.tenant_id == tenant_id and ev.device_id == device_id:
                    out.append(ev)
        out.sort(key=lambda e: (e.topic, e.partition, e.offset))  # each partition in Kafka order
        return out
    finally:
        c.close()
