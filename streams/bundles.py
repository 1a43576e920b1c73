"""Validated readings bundled per partition for the device-activity agent (adr/0057).

Faust costs tens of microseconds per *event* (fetcher, conductor, queue, stream processors, ack) whatever
the handler does. The status and rules handlers need every validated reading, but not one Faust event
each: validate therefore also writes, per batch and partition, one bundle record holding that batch's
readings of that partition (keys and the exact bytes it wrote to ``fleetstream.telemetry``, in order) to
this worker group's internal topic, on the same partition number as the readings. Device-activity consumes
the bundles instead of ``fleetstream.telemetry``: one event per bundle, and a worker that owns partition
*p* still owns every reading, table entry and timer of the devices on *p* (adr/0050).

A bundle also carries the fields of each reading the handlers use, as validate decoded them, so the rules
handler does not decode the Avro record a second time (~12 µs each). Wire format of a bundle value:
``FSB2`` then ``marshal`` (format version 4, readable by every later Python) of a list of ``(key, value
bytes, event_time, device_id, device_type, tags, values)`` tuples: ~1 µs per reading each way (a dict per
reading would cost 3 µs to load). ``marshal`` is not meant for untrusted input; only the streams workers
write this internal topic.
"""

from __future__ import annotations

import logging
import marshal
from typing import NamedTuple

from runtime.kafka import KafkaLike, clients
from schemas import topics

log = logging.getLogger(__name__)

MAX_READINGS = 1000  # per bundle: ~150–300 KB, well under Kafka's default 1 MB message size
RETENTION_MS = 24 * 3600 * 1000  # only the agents read it, shortly after it is written

MAGIC = b"FSB2"
TELEMETRY = topics.TELEMETRY.name  # the topic whose readings a bundle carries
FIELDS = ("event_time", "device_id", "device_type", "tags", "values")  # what of a record a bundle carries


def topic_name(app_id: str) -> str:
    return f"{app_id}-telemetry-bundles"


class Reading(NamedTuple):
    """What the handlers read of a record: the fields of a Kafka message they use, and for a validated
    reading from a bundle its decoded record (None otherwise)."""

    topic: str
    partition: int
    key: bytes
    value: bytes
    rec: dict | None = None


def pack(items: list[tuple[bytes, bytes, dict]]) -> bytes:
    """``(key, value, record)`` per reading; of the record only ``FIELDS`` travel."""
    return MAGIC + marshal.dumps([(k, v, r["event_time"], r["device_id"], r["device_type"], r["tags"], r["values"])
                                  for k, v, r in items], 4)


def readings(data: bytes, partition: int) -> list[Reading]:
    """The bundle's readings as the handlers take them, on ``partition`` of ``fleetstream.telemetry``, each
    with its record holding ``FIELDS``. Built in one pass with ``tuple.__new__``: a NamedTuple's own
    constructor and a second list cost about as much as loading the bundle (adr/0215)."""
    if data[:4] != MAGIC:
        raise ValueError("not a telemetry bundle")
    new, topic = tuple.__new__, TELEMETRY
    return [new(Reading, (topic, partition, k, v, {"event_time": t, "device_id": d, "device_type": dt, "tags": tags,
                                                  "values": values}))
            for k, v, t, d, dt, tags, values in marshal.loads(data[4:])]


def ensure_topic(kafka: KafkaLike, name: str, like: str) -> int:
    """Creates the bundle topic with as many partitions as ``like`` (the telemetry topic) if it does not
    exist yet (replication and min ISR from the factory, adr/0131); returns that partition count."""
    k = clients(kafka)
    admin = k.admin()
    md = admin.list_topics(timeout=30)
    partitions = len(md.topics[like].partitions)
    if name in md.topics:
        have = len(md.topics[name].partitions)
        if have != partitions:
            log.error("%s has %d partitions, %s has %d: device ownership would split", name, have, like, partitions)
        return partitions
    fut = admin.create_topics([k.new_topic(name, partitions, {"retention.ms": str(RETENTION_MS)})],
                              operation_timeout=30)[name]
    try:
        fut.result()
    except Exception as exc:  # another worker created it first
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    return partitions
