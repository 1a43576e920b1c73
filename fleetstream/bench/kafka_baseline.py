"""Bare Kafka: produce → consume of records the size of the pipeline's own, with the connectors'
producer settings, on the same broker in the same run. The pipeline is reported as a fraction of it."""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition

from runtime.kafka import READER, UPLINK_PRODUCER, KafkaLike, clients
from schemas import codec, device_key

TOPIC = "fleetstream.bench.baseline"


def sample_records(n: int, devices: int = 1000) -> list[tuple[bytes, bytes]]:
    tcodec, tenant = codec("telemetry"), str(uuid.uuid4())
    now = time.time_ns() // 1_000_000
    out = []
    for i in range(n):
        dev = f"sim-{i % devices:05d}"
        rec = {"tenant_id": tenant, "device_id": dev, "event_time": now + i, "receive_time": now + i,
               "protocol": "mqtt", "values": {"voltage": 229.0 + (i % 20) / 10, "power_w": 80.0 + i % 40,
                                              "energy_kwh": i * 0.001}, "device_type": None, "tags": []}
        out.append((device_key(tenant, dev), tcodec.encode(rec)))
    return out


def measure(kafka: KafkaLike, n: int = 100_000, partitions: int = 6, timeout: float = 120) -> dict:
    kafka = clients(kafka)
    admin = kafka.admin()
    fs = admin.create_topics([kafka.new_topic(TOPIC, partitions)])
    try:
        fs[TOPIC].result(15)
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    records = sample_records(n)
    consumer = kafka.consumer(f"fleetstream-bench-baseline-{time.time_ns()}", READER,
                              {"fetch.wait.max.ms": 10, "auto.offset.reset": "earliest"})
    highs = _high_watermarks(consumer, partitions)
    consumer.assign([TopicPartition(TOPIC, p, o) for p, o in highs.items()])
    consumed, last_consumed = [0], [0.0]

    def consume() -> None:
        deadline = time.monotonic() + timeout
        while consumed[0] < n and time.monotonic() < deadline:
            got = consumer.consume(10000, timeout=0.2)
            consumed[0] += sum(1 for m in got if not m.error())
            if got:
                last_consumed[0] = time.monotonic()

    # the connectors' settings (connectors/uplink.py): idempotent, acks=all, lz4, linger 5 ms
    producer = kafka.producer(UPLINK_PRODUCER)
    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    t0 = time.monotonic()
    for key, value in records:
        while True:
            try:
                producer.produce(TOPIC, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(timeout)
    produced_s = time.monotonic() - t0
    reader.join(timeout)
    consumer.close()
    end_to_end_s = (last_consumed[0] - t0) if consumed[0] >= n else float("nan")
    return {"records": n, "record_bytes": len(records[0][1]), "produce_msg_s": round(n / produced_s),
            "produce_consume_msg_s": round(n / end_to_end_s) if end_to_end_s == end_to_end_s else None,
            "consumed": consumed[0]}


def _high_watermarks(consumer: Consumer, partitions: int, wait_s: float = 20) -> dict[int, int]:
    """A topic created a moment ago may not have partition leaders yet (its metadata can even list no
    partitions at all, which would leave the reader assigned to nothing): ask again until it has them all."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            md = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC]
            if md.error is not None or len(md.partitions) < partitions:
                raise KafkaException(md.error or "partitions not all known yet")
            return {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in md.partitions}
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
