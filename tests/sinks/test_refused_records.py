"""One record the store refuses never holds back the others (adr/0115). A real chdb takes a batch of dead letters
in which one record cannot be inserted: the sink halves the batch until that record stands alone, writes every
other record, and sets the refused one aside, counted. While the store is away nothing is set aside: the batch
waits and is written whole once the store answers again. A lone surrogate in a reason (what a device sent,
quoted) is stored escaped, not refused."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from schemas import codec_for, topics
from sinks.base import BaseSink, BatchingSink
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseRejectionSink

NOW = int(time.time() * 1000)


def _dead_letter(i: int, **over) -> dict:
    rec = {"tenant_id": "t-refused", "device_id": f"d{i}", "time": NOW + i, "source": "mqtt",
           "reason_code": "invalid_json", "reason": f"reading {i} is not JSON", "origin": "t/d/telemetry",
           "raw": b"{not json", "kafka_topic": "fleetstream.dlq", "kafka_partition": 0, "kafka_offset": i}
    rec.update(over)
    return rec


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    client = ClickHouse(f"chdb://{tmp_path_factory.mktemp('ch-refused')}", database="refused")
    create_all(client, "refused")
    yield client
    client.close()


def _runner(sink: BaseSink, kafka="127.0.0.1:1", topic: str = topics.DEAD_LETTER.name) -> BatchingSink:
    # never started: the tests drive its write path; the consumer is only constructed. On the dead-letter
    # topic (what the rejection sink reads) a refused record is only set aside; elsewhere it is dead-lettered
    runner = BatchingSink(sink, kafka=kafka, topic=topic, group_id="refused-test")
    runner.consumer.close()
    runner.REFUSALS_TO_SET_ASIDE = 2
    return runner


def _stored(ch: ClickHouse) -> list[str]:
    return [r[0] for r in ch.query_rows("SELECT device_id FROM refused.rejections FINAL ORDER BY device_id")]


def test_a_refused_record_is_set_aside_and_every_other_record_is_stored(ch):
    batch = [_dead_letter(i) for i in range(10)]
    batch[6]["time"] = "not a time"  # clickhouse-connect refuses to serialise this one record
    runner = _runner(ClickHouseRejectionSink(ch))
    skipped = runner._write_until_done(batch)
    assert skipped == 1 and runner.stats["set_aside"] == 1
    assert _stored(ch) == [f"d{i}" for i in range(10) if i != 6]


def test_a_lone_surrogate_in_a_reason_is_stored_escaped(ch):
    runner = _runner(ClickHouseRejectionSink(ch))
    assert runner._write_until_done([_dead_letter(20, reason="metric '\udc00x' is not text", origin="a/\ud800")]) == 0
    reason, origin = ch.query_rows("SELECT reason, origin FROM refused.rejections FINAL WHERE device_id = 'd20'")[0]
    assert reason == "metric '\\udc00x' is not text" and origin == "a/\\ud800"


class _Away(BaseSink):
    """A store that is away (refuses every write and every probe) until ``back`` is set."""

    def __init__(self):
        self.back, self.written, self.attempts = threading.Event(), [], 0

    def write(self, records):
        self.attempts += 1
        if not self.back.is_set():
            raise ConnectionError("store away")
        self.written.extend(records)

    def answers(self):
        return self.back.is_set()


def test_an_outage_sets_nothing_aside_and_the_batch_is_written_whole_once_the_store_is_back():
    store = _Away()
    runner = _runner(store)
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(runner._write_until_done([{"n": i} for i in range(8)])))
    t.start()
    deadline = time.monotonic() + 60
    while store.attempts < 5 and time.monotonic() < deadline:  # retried past REFUSALS_TO_SET_ASIDE, whole
        time.sleep(0.05)
    assert store.attempts >= 5 and not store.written and runner.stats["set_aside"] == 0
    store.back.set()
    t.join(60)
    assert out == [0] and [r["n"] for r in store.written] == list(range(8))


class _Picky(BaseSink):
    """Answers, and refuses every batch holding device ``d6``."""

    def __init__(self):
        self.written: list[dict] = []

    def write(self, records):
        if any(r["device_id"] == "d6" for r in records):
            raise ValueError("column value out of range")
        self.written.extend(records)

    def answers(self):
        return True


class _Msg:  # the consumer's view of a record, for the bytes the dead letter carries
    def __init__(self, topic: str, offset: int):
        self._t, self._o = topic, offset

    def topic(self):
        return self._t

    def partition(self):
        return 0

    def offset(self):
        return self._o

    def value(self):
        return f"original bytes {self._o}".encode()


def test_a_record_the_store_refuses_is_dead_lettered_with_its_bytes(infra, settings):
    topic = f"refused-{uuid.uuid4().hex[:8]}"  # only named in the dead letter's origin
    store = _Picky()
    runner = _runner(store, kafka=settings.kafka, topic=topic)
    runner._msgs = [_Msg(topic, i) for i in range(10)]
    batch = [{"tenant_id": "t-refused", "device_id": f"d{i}", "kafka_topic": topic, "kafka_partition": 0,
              "kafka_offset": i} for i in range(10)]
    assert runner._write_until_done(batch) == 1 and runner.stats["set_aside"] == 1
    assert sorted(r["device_id"] for r in store.written) == [f"d{i}" for i in range(10) if i != 6]
    runner.dead_letters.close()
    probe = settings.kafka.consumer(f"refused-dlq-{uuid.uuid4().hex[:6]}",
                                    {"enable.auto.commit": False, "auto.offset.reset": "earliest"})
    probe.subscribe([topics.DEAD_LETTER.name])
    found, deadline = None, time.monotonic() + 60
    while found is None and time.monotonic() < deadline:
        m = probe.poll(1.0)
        if m is None or m.error():
            continue
        rec = codec_for(m.value()).decode(m.value())
        if rec["origin"] == f"{topic}[0]@6":
            found = rec
    probe.close()
    assert found is not None, "no dead letter for the refused record"
    assert (found["source"], found["reason_code"], found["tenant_id"], found["device_id"], found["raw"]) == (
        "sinks._Picky", "store_refused", "t-refused", "d6", b"original bytes 6")
    assert "column value out of range" in found["reason"]
