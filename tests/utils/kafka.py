"""Reading platform topics from tests: decode every record from the beginning until a predicate matches."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas import codec, codec_for, device_key, topics


def find_records(bootstrap: str, topic: str, match: Callable[[dict], bool], *, count: int = 1,
                 timeout: float = 30) -> list[dict]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, -2) for p in md.partitions])
        found, deadline = [], time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error() or m.value() is None:  # a tombstone matches nothing
                continue
            rec = codec_for(m.value()).decode(m.value())
            if match(rec):
                found.append(rec)
        return found
    finally:
        c.close()


def records_to_end(bootstrap: str, topic: str, key: bytes | None = None,
                   decode: Callable[[bytes], dict] | None = None) -> list[dict | None]:
    """Every record on ``topic`` up to its end as it is now (optionally only ``key``'s), in partition order;
    None for a tombstone. Unlike ``find_records`` it proves absence: it stops at the end, not at a timeout."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
        c.assign([TopicPartition(topic, p, 0) for p, hi in ends.items() if hi > 0])
        out, done = [], {p for p, hi in ends.items() if hi == 0}
        while len(done) < len(ends):
            for m in c.consume(500, 1.0):
                if m.error():
                    continue
                if key is None or m.key() == key:
                    v = m.value()
                    out.append(None if v is None else (decode or (lambda b: codec_for(b).decode(b)))(v))
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
        return out
    finally:
        c.close()


def probe_validate(bootstrap: str, tenant: str, device: str, ready: Callable[[str, dict], bool], *,
                   what: str, timeout: float = 60) -> dict:
    """Sends readings of ``device`` (metric ``probe``) to the raw topic, one at a time, until the streams
    worker's verdict on one satisfies ``ready(topic, record)`` (topic: the validated or the dead-letter one);
    returns that record. The worker's registry view is not observable from outside otherwise: a registered
    device's reading coming out enriched, or an unregistered one's refused as ``unknown_device``, shows the
    view holds the tenant's entries."""
    watched = (topics.TELEMETRY.name, topics.DEAD_LETTER.name)
    tel = codec("telemetry")
    key = device_key(tenant, device)
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}", "enable.auto.commit": False})
    try:
        md = c.list_topics(timeout=10).topics
        tps = [TopicPartition(t, part) for t in watched for part in md[t].partitions]
        c.assign([TopicPartition(tp.topic, tp.partition, c.get_watermark_offsets(tp, timeout=10)[1]) for tp in tps])
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            now = int(time.time() * 1000)
            p.produce(topics.TELEMETRY_RAW.name, tel.encode({
                "tenant_id": tenant, "device_id": device, "event_time": now, "receive_time": now,
                "protocol": "http", "values": {"probe": 1.0}, "device_type": None, "tags": []}), key)
            assert p.flush(10) == 0, "probe reading not written"
            verdict = None
            while verdict is None and time.monotonic() < deadline:  # each probe gets exactly one verdict
                m = c.poll(0.2)
                if m is None or m.error() or m.value() is None:
                    continue
                rec = codec_for(m.value()).decode(m.value())
                if rec.get("tenant_id") == tenant and rec.get("device_id") == device:
                    verdict = (m.topic(), rec)
            if verdict is not None:
                if ready(*verdict):
                    return verdict[1]
                last = verdict
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last verdict: {last!r}")
    finally:
        c.close()
