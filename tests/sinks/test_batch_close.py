"""When a sink's batch closes (adr/0212): with what the consumer already holds once the gap since the previous
batch has passed, never waiting after it; while the gap runs it keeps collecting; the gap grows with the last
write and never beyond ``batch_ms``. Pure batching logic: the consumer is a stand-in that records how long
each call was allowed to wait (no timing is asserted, only the waits the sink asked for)."""

from __future__ import annotations

import time

from schemas import topics
from sinks.base import BaseSink, BatchingSink


class _Msg:
    def __init__(self, offset: int):
        self._offset = offset

    def error(self):
        return None

    def offset(self) -> int:
        return self._offset


class _Consumer:
    """Hands out the prepared answers one call at a time and records each call's (count, timeout)."""

    def __init__(self, answers: list[int]):
        self.answers, self.calls, self.next = answers, [], 0

    def consume(self, n: int, timeout: float) -> list[_Msg]:
        self.calls.append((n, timeout))
        k = min(n, self.answers.pop(0)) if self.answers else 0
        out = [_Msg(self.next + i) for i in range(k)]
        self.next += k
        return out


class _Nothing(BaseSink):
    def write(self, records) -> None:
        return None


def _sink(answers: list[int], *, batch_ms: int = 1000, batch_size: int = 5000) -> tuple[BatchingSink, _Consumer]:
    sink = BatchingSink(_Nothing(), kafka="127.0.0.1:1", topic=topics.ALERTS.name, group_id="batch-close-test",
                        batch_ms=batch_ms, batch_size=batch_size)
    sink.consumer.close()  # never started: the stand-in takes its place
    sink.consumer = consumer = _Consumer(answers)
    return sink, consumer


def test_after_a_quiet_spell_the_batch_is_what_the_consumer_holds_without_waiting():
    sink, consumer = _sink([1, 40, 7])
    batch = sink._collect()
    assert len(batch) == 41  # the first record and what its fetch brought, not the later 7
    assert consumer.calls[0] == (1, sink.IDLE_WAIT_S)
    assert consumer.calls[1:] == [(4999, 0.0)]


def test_right_after_a_batch_the_next_one_collects_until_the_gap_has_passed():
    sink, consumer = _sink([1, 10, 5, 3])
    sink._closed_at = time.monotonic()  # a batch closed just now
    batch = sink._collect()
    waits = [t for _n, t in consumer.calls[1:]]
    assert 0 < waits[0] <= sink.MIN_GAP_MS / 1000  # collects while the gap runs
    assert waits[-1] == 0.0  # then takes what is there and closes
    assert all(t > 0 for t in waits[:-1])  # nothing closed it early
    assert len(batch) == 19  # everything that came while the gap ran


def test_a_slow_write_stretches_the_gap_but_never_beyond_batch_ms():
    sink, consumer = _sink([1, 2], batch_ms=900)
    sink.stats["last_write_ms"] = 5000  # 4 x 5 s would be 20 s
    sink._closed_at = time.monotonic()
    sink._collect()
    assert sink.MIN_GAP_MS / 1000 < consumer.calls[1][1] <= 0.9


def test_a_full_batch_closes_at_once():
    sink, consumer = _sink([1, 99, 500], batch_size=100)
    sink._closed_at = time.monotonic()
    batch = sink._collect()
    assert len(batch) == 100
    assert len(consumer.calls) == 2  # the gap was not waited out: the batch was full


def test_min_gap_is_capped_by_batch_ms():
    sink, _ = _sink([], batch_ms=100)
    assert sink.min_gap_s == 0.1
