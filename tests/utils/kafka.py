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
