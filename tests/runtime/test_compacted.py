"""The one compacted-topic follower (adr/0125): readiness once the start-time end is read, tombstones, a
restart rebuilding the same view, several topics on one follower, and the table's rules without a broker."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from runtime.compacted import CompactedFollower, CompactedTable
from runtime.kafka import CONTROL_PRODUCER, KafkaClients

WAIT_S = 30


@pytest.fixture
def kafka(infra, settings) -> KafkaClients:
    return settings.kafka


def new_topic(kafka: KafkaClients, partitions: int = 3, policy: str = "compact") -> str:
    name = f"test-compacted-{uuid.uuid4().hex[:8]}"
    admin = kafka.admin()  # held until the result: a collected client cancels its requests
    admin.create_topics([NewTopic(name, partitions, 1, config={"cleanup.policy": policy})])[name].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every partition led, or the first produce waits for metadata
        md = admin.list_topics(name, timeout=10).topics[name]
        if len(md.partitions) == partitions and all(p.leader >= 0 for p in md.partitions.values()):
            return name
        time.sleep(0.1)
    raise AssertionError(f"{name}: partitions without a leader")


def produce(kafka: KafkaClients, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    p = kafka.producer(CONTROL_PRODUCER)
    for key, value in records:
        p.produce(topic, value, key)
    assert p.flush(60) == 0


def table(kafka: KafkaClients, topic: str, **kw) -> CompactedTable:
    return CompactedTable(kafka, topic, name=f"test-{topic}", key=bytes.decode, decode=bytes.decode, **kw)


def test_caught_up_only_once_everything_there_at_start_is_read_and_tombstones_delete(kafka):
    topic = new_topic(kafka)
    produce(kafka, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)])
    produce(kafka, topic, [(b"k1", b"v1-new"), (b"k2", None), (b"k3", None), (b"k3", b"back")])
    expected = {f"k{i}": f"v{i}" for i in range(300)} | {"k1": "v1-new", "k3": "back"}
    del expected["k2"]
    seen_at_ready: list[dict] = []
    t = table(kafka, topic, batch=7)  # many consume calls: readiness must wait for all of them
    t._on_caught_up = lambda: seen_at_ready.append(t.snapshot())
    t.start()
    try:
        assert t.wait_caught_up(WAIT_S)
        assert seen_at_ready == [expected]
        assert t.get("k2") is None and "k2" not in t and len(t) == 299
    finally:
        t.stop()


def test_follows_after_catching_up_tells_each_change_and_sync_is_a_barrier(kafka):
    topic = new_topic(kafka)
    changes: list[tuple[str, str | None]] = []
    t = table(kafka, topic, on_change=lambda k, v: changes.append((k, v))).start()
    try:
        assert t.wait_caught_up(WAIT_S)  # an empty topic: caught up at once
        produce(kafka, topic, [(b"a", b"1"), (b"b", b"2"), (b"a", None), (b"zz", None)])
        assert t.sync(WAIT_S)
        assert t.snapshot() == {"b": "2"}
        # in order per key (one partition each); "zz" was never there: its tombstone changes nothing
        assert [c for c in changes if c[0] == "a"] == [("a", "1"), ("a", None)]
        assert [c for c in changes if c[0] != "a"] == [("b", "2")]
    finally:
        t.stop()


def test_a_restarted_follower_rebuilds_the_view_including_changes_made_while_it_was_stopped(kafka):
    topic = new_topic(kafka)
    produce(kafka, topic, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    first = table(kafka, topic).start()
    assert first.wait_caught_up(WAIT_S)
    first.stop()
    assert not first._thread.is_alive()  # stopped within its poll, consumer closed
    produce(kafka, topic, [(b"a", None), (b"b", b"22"), (b"d", b"4")])
    second = table(kafka, topic).start()  # same group id: nothing was committed, it reads from the beginning
    try:
        assert second.wait_caught_up(WAIT_S)
        assert second.snapshot() == {"b": "22", "c": "3", "d": "4"}
        assert first.snapshot() == {"a": "1", "b": "2", "c": "3"}  # the stopped one changed no more
    finally:
        second.stop()


def test_partitions_emptied_by_retention_do_not_hold_readiness(kafka):
    """low == high > 0: the partition had records, none are left to read."""
    topic = new_topic(kafka, partitions=1, policy="compact,delete")  # Kafka deletes records from those only
    produce(kafka, topic, [(b"a", b"1"), (b"b", b"2")])
    admin = kafka.admin()
    list(admin.delete_records([TopicPartition(topic, 0, 2)]).values())[0].result(15)
    t = table(kafka, topic).start()
    try:
        assert t.wait_caught_up(WAIT_S) and len(t) == 0
        assert t.sync(WAIT_S)
    finally:
        t.stop()


def test_one_follower_over_several_topics_is_ready_when_all_are_and_survives_a_failing_callback(kafka):
    a, b = new_topic(kafka), new_topic(kafka, partitions=1)
    produce(kafka, a, [(b"x", b"1")])
    produce(kafka, b, [(b"boom", b"!"), (b"y", b"2")])
    got: list[tuple[str, bytes, bytes | None]] = []
    ready = threading.Event()

    def on_record(topic, key, value):
        if key == b"boom":
            raise ValueError("a poison record")
        got.append((topic, key, value))

    f = CompactedFollower(kafka, [a, b], name="test-multi", on_record=on_record, on_caught_up=ready.set).start()
    try:
        assert f.wait_caught_up(WAIT_S) and ready.is_set()
        assert sorted(got) == sorted([(a, b"x", b"1"), (b, b"y", b"2")])
        produce(kafka, b, [(b"y", None)])
        assert f.sync(WAIT_S)
        assert got[-1] == (b, b"y", None)  # the follower hands tombstones on; what they mean is the caller's
    finally:
        f.stop()


def test_table_rules_without_a_broker():
    changes = []
    t = CompactedTable("unused:1", "t", name="unit", key=lambda k: k.decode().split(":")[1],
                       decode=lambda v: int(v), on_change=lambda k, v: changes.append((k, v)))
    t.apply("t", b"x:a", b"1")
    t.apply("t", b"x:a", b"not a number")  # undecodable: skipped, the previous value stays
    t.apply("t", b"no-colon", b"2")  # the key does not decode: skipped
    t.apply("t", None, b"3")  # no key: nothing to keep it under
    t.apply("t", b"x:b", None)  # tombstone of an unknown key: no change
    t.apply("t", b"x:c", b"5")
    t.apply("t", b"x:c", None)
    assert t.snapshot() == {"a": 1}
    assert changes == [("a", 1), ("c", 5), ("c", None)]
