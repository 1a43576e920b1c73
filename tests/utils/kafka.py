"""Reading platform topics from tests: decode every record from the beginning until a predicate matches."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from schemas import codec_by_fingerprint


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
            rec = codec_by_fingerprint(m.value()).decode(m.value())
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
                    out.append(None if v is None else (decode or (lambda b: codec_by_fingerprint(b).decode(b)))(v))
                if m.offset() + 1 >= ends[m.partition()]:
                    done.add(m.partition())
        return out
    finally:
        c.close()
