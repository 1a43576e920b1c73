"""The librdkafka batch loop that hosts validate (adr/0057), on the real broker with topics of its own:
every record reaches the output in its key's order even when a batch fails before it is produced or after
it is produced but before its offsets are committed (replayed: duplicates allowed, losses and reordering
not), and a new group starts where the legacy group stopped."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.batch_pipe import BatchPipe
from tests.utils.factories import wait_for

N, KEYS = 6000, 12


def _topics(bootstrap: str, *names: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the futures resolve
    futs = admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names],
                               operation_timeout=30)
    for f in futs.values():
        f.result()


def _produce(bootstrap: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "consistent_random", "linger.ms": 5})
    for i in range(n):
        p.produce(topic, f"{i}".encode(), f"k{i % KEYS}".encode())
        if i % 1000 == 0:
            p.poll(0)
    p.flush(30)


def _read_all(bootstrap: str, topic: str, at_least: int, timeout: float = 90) -> dict[bytes, list[int]]:
    """Every record on ``topic`` by key, once ``at_least`` distinct values arrived (or the timeout)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    by_key: dict[bytes, list[int]] = defaultdict(list)
    try:
        c.assign([TopicPartition(topic, p, -2) for p in range(3)])
        distinct, deadline = set(), time.monotonic() + timeout
        while len(distinct) < at_least and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if not m.error():
                    by_key[m.key()].append(int(m.value()))
                    distinct.add(int(m.value()))
        time.sleep(0.5)  # anything produced twice by now is counted too
        for m in c.consume(10000, 1):
            if not m.error():
                by_key[m.key()].append(int(m.value()))
        return by_key
    finally:
        c.close()


def _assert_complete_and_ordered(by_key: dict[bytes, list[int]], n: int) -> None:
    seen: set[int] = set()
    for key, values in by_key.items():
        firsts = list(dict.fromkeys(values))  # replays may repeat records; first sightings keep the order
        assert firsts == sorted(firsts), f"{key!r} reordered"
        seen.update(firsts)
    assert seen == set(range(n)), f"{n - len(seen)} records lost"


def _copy(msgs):
    return [(msgs[0].topic().replace("src", "dst"), m.key(), m.value()) for m in msgs]


class FailingTwice(BatchPipe):
    """Fails one batch before producing it and another after producing it but before committing it."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.failed = set()

    def _handle(self, consumer, producer, msgs, failures):
        if self.stats["batches"] == 1 and "before" not in self.failed:
            self.failed.add("before")
            raise RuntimeError("crash while processing a batch")
        super()._handle(consumer, producer, msgs, failures)

    def _commit(self, consumer, ends):
        if self.stats["batches"] == 2 and "after" not in self.failed:
            self.failed.add("after")
            raise RuntimeError("crash after producing, before committing")
        super()._commit(consumer, ends)


def test_a_failed_batch_is_replayed_so_nothing_is_lost_or_reordered(infra, settings):
    run = uuid.uuid4().hex[:8]
    src, dst = f"test.pipe.src.{run}", f"test.pipe.dst.{run}"
    bs = settings.bootstrap_servers
    _topics(bs, src, dst)
    _produce(bs, src, N)
    pipe = FailingTwice(bs, src, f"test-pipe-{run}", _copy, batch=500).start()
    try:
        by_key = _read_all(bs, dst, N)
        wait_for(lambda: pipe.stats["records"] >= N, timeout=60, what="the pipe to commit every record")
    finally:
        pipe.stop()
    assert pipe.failed == {"before", "after"} and pipe.stats["restarts"] == 2
    _assert_complete_and_ordered(by_key, N)
    assert sum(map(len, by_key.values())) > N  # the batch produced before its commit failed came again


def test_a_new_group_starts_where_the_legacy_group_stopped(infra, settings):
    run = uuid.uuid4().hex[:8]
    src, dst = f"test.pipe.src.{run}", f"test.pipe.dst.{run}"
    bs = settings.bootstrap_servers
    _topics(bs, src, dst)
    _produce(bs, src, 300)
    legacy = Consumer({"bootstrap.servers": bs, "group.id": f"legacy-{run}", "enable.auto.commit": False})
    ends = {p: legacy.get_watermark_offsets(TopicPartition(src, p), timeout=10)[1] for p in range(3)}
    legacy.commit(offsets=[TopicPartition(src, p, hi) for p, hi in ends.items()], asynchronous=False)
    legacy.close()
    pipe = BatchPipe(bs, src, f"test-pipe-{run}", _copy, legacy_group=f"legacy-{run}").start()
    try:
        wait_for(lambda: _assigned(bs, f"test-pipe-{run}", src), timeout=60,
                 what="the pipe to join its group")
        p = Producer({"bootstrap.servers": bs, "partitioner": "consistent_random"})
        for i in range(300, 330):
            p.produce(src, f"{i}".encode(), f"k{i % KEYS}".encode())
        p.flush(10)
        by_key = _read_all(bs, dst, 30, timeout=60)
    finally:
        pipe.stop()
    assert sorted(v for vs in by_key.values() for v in vs) == list(range(300, 330))


def _assigned(bootstrap: str, group: str, topic: str) -> bool:
    """The group has committed or holds offsets for the topic: its member is assigned and fetching."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    desc = a.describe_consumer_groups([group])[group].result(timeout=10)
    return any(m.assignment.topic_partitions for m in desc.members)
