"""The librdkafka batch loop that hosts validate (adr/0057), on the real broker with topics of its own:
every record reaches the output in its key's order even when a batch fails before it is produced or after
it is produced but before its offsets are committed (replayed: duplicates allowed, losses and reordering
not), and a new group starts where the legacy group stopped.

The order the pipe must keep is the order the source topic holds, read back: a plain (non-idempotent)
producer may itself store a key's records out of order when it retries, which it did on a freshly created
topic on a busy machine (issue 19). The test's producer is idempotent, and every wait is for a condition
(offsets committed, high watermarks read), so a slow machine only makes the test slower."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.batch_pipe import BatchPipe
from tests.utils.factories import wait_for

N, KEYS, PARTITIONS = 6000, 12, 3


def _topics(bootstrap: str, *names: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the futures resolve
    futs = admin.create_topics([NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names],
                               operation_timeout=30)
    for f in futs.values():
        f.result()


def _produce(bootstrap: str, topic: str, values: range) -> None:
    # idempotent, as every producer of the platform: retries neither duplicate nor reorder a key's records
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5,
                  "enable.idempotence": True})
    for i in values:
        p.produce(topic, f"{i}".encode(), f"k{i % KEYS}".encode())
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(120) == 0


def _read_to_end(bootstrap: str, topic: str, timeout: float = 180) -> dict[bytes, list[int]]:
    """Every record on ``topic`` by key, in the order the topic holds them, up to the high watermarks."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    by_key: dict[bytes, list[int]] = defaultdict(list)
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout
        while left:
            assert time.monotonic() < deadline, f"{topic}: partitions {sorted(left)} not read to {ends}"
            for m in c.consume(1000, 1):
                if m.error():
                    continue
                by_key[m.key()].append(int(m.value()))
                if m.offset() + 1 >= ends[m.partition()]:
                    left.discard(m.partition())
        return by_key
    finally:
        c.close()


def _committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    """The group committed every record of ``topic``: the pipe produced and confirmed all its output."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return all(tp.offset >= c.get_watermark_offsets(tp, timeout=10)[1] for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


def _assert_complete_and_in_source_order(out: dict[bytes, list[int]], source: dict[bytes, list[int]]) -> None:
    assert set(out) == set(source)
    for key, values in source.items():
        firsts = list(dict.fromkeys(out[key]))  # replays may repeat records; first sightings keep the order
        assert set(firsts) == set(values), f"{key!r}: {len(set(values) - set(firsts))} records lost"
        assert firsts == values, f"{key!r} reordered"


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
    src, dst, group = f"test.pipe.src.{run}", f"test.pipe.dst.{run}", f"test-pipe-{run}"
    bs = settings.bootstrap_servers
    _topics(bs, src, dst)
    _produce(bs, src, range(N))
    source = _read_to_end(bs, src)
    assert sum(map(len, source.values())) == N
    pipe = FailingTwice(bs, src, group, _copy, batch=500).start()
    try:
        wait_for(lambda: _committed_to_end(bs, group, src), timeout=300, interval=0.5,
                 what="the pipe to commit every record")
    finally:
        pipe.stop()
    # a busy machine may add restarts of its own (a delivery wait over 30 s): replays, never losses
    assert pipe.failed == {"before", "after"} and pipe.stats["restarts"] >= 2
    out = _read_to_end(bs, dst)
    _assert_complete_and_in_source_order(out, source)
    assert sum(map(len, out.values())) > N  # the batch produced before its commit failed came again


def test_a_new_group_starts_where_the_legacy_group_stopped(infra, settings):
    run = uuid.uuid4().hex[:8]
    src, dst, group = f"test.pipe.src.{run}", f"test.pipe.dst.{run}", f"test-pipe-{run}"
    bs = settings.bootstrap_servers
    _topics(bs, src, dst)
    _produce(bs, src, range(300))
    legacy = Consumer({"bootstrap.servers": bs, "group.id": f"legacy-{run}", "enable.auto.commit": False})
    ends = {p: legacy.get_watermark_offsets(TopicPartition(src, p), timeout=10)[1] for p in range(PARTITIONS)}
    legacy.commit(offsets=[TopicPartition(src, p, hi) for p, hi in ends.items()], asynchronous=False)
    legacy.close()
    pipe = BatchPipe(bs, src, group, _copy, legacy_group=f"legacy-{run}").start()
    try:
        wait_for(lambda: _assigned(bs, group, src), timeout=120, what="the pipe to join its group")
        _produce(bs, src, range(300, 330))
        wait_for(lambda: _committed_to_end(bs, group, src), timeout=120, interval=0.5,
                 what="the pipe to commit the new records")
    finally:
        pipe.stop()
    out = _read_to_end(bs, dst)
    assert sorted(v for vs in out.values() for v in vs) == list(range(300, 330))


def _assigned(bootstrap: str, group: str, topic: str) -> bool:
    """The group has committed or holds offsets for the topic: its member is assigned and fetching."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    desc = a.describe_consumer_groups([group])[group].result(timeout=10)
    return any(m.assignment.topic_partitions for m in desc.members)
