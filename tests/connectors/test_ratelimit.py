"""Rate limits apply to what a device sends, not to what the platform hands over late (adr/0104): after a
stall (Kafka down, connector away) a device that sent at its rate gets its whole backlog in, a device that
floods is still limited, the credit is bounded by the stall and expires, and a message the broker redelivers
(MQTT DUP) is not charged twice. Pure logic with a test clock; the real outage is in test_outage_backlog."""

from __future__ import annotations

from connectors.base import Admission
from connectors.ratelimit import CREDIT_DRAIN_FACTOR, CREDIT_MIN_S, TokenBuckets
from tests.utils.clock import Clock


def _send(tb: TokenBuckets, key: str, n: int) -> int:
    """How many of ``n`` single readings arriving now are admitted."""
    return sum(tb.take(key) == 0.0 for _ in range(n))


def test_a_backlog_queued_during_a_stall_is_admitted_after_it():
    clock = Clock()
    tb = TokenBuckets(rate=10, burst=20, clock=clock)
    for _ in range(30):  # steady state at the device's rate: one reading every 0.1 s
        clock.t += 0.1
        assert tb.take("dev") == 0.0
    stall_start = clock.t
    clock.t += 60  # Kafka down: the device keeps sending 10/s, the broker queues 600 readings
    tb.stalled(stall_start, clock.t)
    assert _send(tb, "dev", 600) == 600  # the whole backlog, at once
    clock.t += 0.1
    assert tb.take("dev") == 0.0  # and the device's next reading


def test_without_the_stall_credit_the_same_backlog_is_mostly_refused():
    clock = Clock()
    tb = TokenBuckets(rate=10, burst=20, clock=clock)
    tb.take("dev")
    clock.t += 60
    assert _send(tb, "dev", 600) == 20  # the old behaviour: only the burst (the 736 rate_limited)


def test_a_flooding_device_is_still_limited_around_a_stall():
    clock = Clock()
    tb = TokenBuckets(rate=10, burst=20, clock=clock)
    tb.take("flood")
    start = clock.t
    clock.t += 30
    tb.stalled(start, clock.t)
    # it sent 100/s through the stall: 3,000 queued; its credit is its rate × the stall, plus the burst
    assert _send(tb, "flood", 3000) == 10 * 30 + 20 - 1  # (one burst token went before the stall)
    clock.t += 1
    assert _send(tb, "flood", 100) == 10  # afterwards: its rate again


def test_a_device_first_seen_after_a_restart_gets_the_credit_of_the_time_away():
    clock = Clock()
    tb = TokenBuckets(rate=5, burst=10, clock=clock)
    tb.stalled(clock.t - 40, clock.t)  # a new process: its predecessor stopped 40 s ago
    assert _send(tb, "dev", 300) == 5 * 40 + 10


def test_credit_is_only_for_the_time_a_bucket_overlaps_the_stall_and_it_expires():
    clock = Clock()
    tb = TokenBuckets(rate=10, burst=20, clock=clock)
    start = clock.t
    clock.t += 10
    tb.stalled(start, clock.t)
    clock.t += 1
    tb.take("late")  # first seen after the stall: new buckets start at the stall's beginning
    assert _send(tb, "late", 200) == 10 * 10 + 20 - 1
    # once the stall is long past, no one gets its credit and the fast path is back
    clock.t += max(CREDIT_MIN_S, CREDIT_DRAIN_FACTOR * 10) + 1
    assert _send(tb, "quiet", 100) == 20
    assert not tb._stalls and not tb._banks


def test_overlapping_stalls_merge_and_credit_each_second_once():
    clock = Clock()
    tb = TokenBuckets(rate=1, burst=1, clock=clock)
    tb.take("dev")
    t0 = clock.t
    clock.t += 20
    tb.stalled(t0, t0 + 10)
    tb.stalled(t0 + 5, t0 + 20)  # batches confirmed one after another report overlapping waits
    tb.stalled(t0 + 2, t0 + 3)
    assert [(s, e) for s, e, _ in tb._stalls] == [(t0, t0 + 20)]
    assert _send(tb, "dev", 100) == 20  # the burst token was spent before the stall


def test_a_redelivered_message_is_not_charged_again():
    tb = TokenBuckets(rate=1, burst=2, clock=Clock())
    adm = Admission(None, tb, require_registered=False)
    assert adm.check("t", "d", 2) is None  # first delivery: charged
    assert adm.check("t", "d", 2, redelivered=True) is None  # the broker sends it again (DUP): not charged
    assert adm.check("t", "d", 1).code == "rate_limited"  # a new message: the bucket is as the first left it
