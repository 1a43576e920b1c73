"""Per-device token buckets: a device may send ``rate`` readings per second with bursts up to ``burst``.

Readings over the limit are refused (dead-lettered as ``rate_limited``), not queued: a device that floods
must not delay the others sharing the connector."""

from __future__ import annotations

import threading
import time


class TokenBuckets:
    """:param rate: tokens added per second per key. :param burst: bucket size (and the initial fill)."""

    def __init__(self, rate: float, burst: float, *, clock=time.monotonic, max_keys: int = 1_000_000):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self._clock, self._max_keys = rate, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str, n: float = 1.0) -> float:
        """Takes ``n`` tokens; returns 0.0 when allowed, else the seconds until they would be there."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= n:
                self._buckets[key] = (tokens - n, now)
                return 0.0
            if len(self._buckets) >= self._max_keys:  # bounded memory under a storm of ids
                self._buckets.clear()
            self._buckets[key] = (tokens, now)
            return (n - tokens) / self.rate
