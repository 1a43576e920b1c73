"""The per-address sign-in throttle's window arithmetic (pure logic, a fake clock)."""

from __future__ import annotations

from gateway.auth.login_throttle import LoginThrottle
from tests.utils.clock import Clock


def test_blocks_after_max_failures_until_the_oldest_leaves_the_window():
    clock = Clock(1000.0)
    th = LoginThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(2):
        th.failed("a")
        clock.t += 10
    assert th.retry_after("a") == 0
    th.failed("a")  # third failure at t=1020; the first was at 1000
    assert th.retry_after("a") == 40
    assert th.retry_after("b") == 0
    clock.t = 1060.5  # the first failure has left the window
    assert th.retry_after("a") == 0


def test_memory_is_bounded_by_forgetting_the_least_recent_address():
    clock = Clock(1000.0)
    th = LoginThrottle(max_failures=1, window_s=60, max_addresses=2, clock=clock)
    for addr in ("a", "b", "c"):
        th.failed(addr)
    assert th.retry_after("a") == 0  # forgotten
    assert th.retry_after("b") > 0 and th.retry_after("c") > 0


def test_expired_addresses_are_dropped():
    clock = Clock(1000.0)
    th = LoginThrottle(max_failures=2, window_s=5, clock=clock)
    th.failed("a")
    clock.t += 6
    assert th.retry_after("a") == 0
    assert "a" not in th._failures
