"""Per-device token buckets: a device may send ``rate`` readings per second with bursts up to ``burst``.

Readings over the limit are refused (dead-lettered as ``rate_limited``), not queued: a device that floods
must not delay the others sharing the connector.

The limit is on what a device sends, not on what the platform hands over late (adr/0104). When the platform
held input back (Kafka down so nothing was acknowledged, the connector disconnected or restarting), the
broker queued what devices sent meanwhile and delivers it as one backlog. ``stalled(start, end)`` records
such a stall; each bucket then earns ``rate`` tokens for every second of the stall it overlaps, kept as a
bank beside the bucket that the ``burst`` cap does not cut, so a device that sent at its rate through the
stall gets all of its backlog in. The bank is usable until a while after the stall (time to drain it) and
never holds more than ``rate`` × the stall's length, so a device that floods is still limited.
"""

from __future__ import annotations

import threading
import time

CREDIT_MIN_S = 60.0  # a stall's credit stays usable at least this long after it ended ...
CREDIT_DRAIN_FACTOR = 3.0  # ... or this many times the stall's length (a backlog drains at ≥ 1/3 real time)


class TokenBuckets:
    """:param rate: tokens added per second per key. :param burst: bucket size (and the initial fill)."""

    def __init__(self, rate: float, burst: float, *, clock=time.monotonic, max_keys: int = 1_000_000):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self._clock, self._max_keys = rate, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._banks: dict[str, tuple[float, float]] = {}  # key -> (tokens earned in stalls, usable until)
        self._stalls: list[tuple[float, float, float]] = []  # (start, end, usable until): sorted, disjoint
        self._stalls_end = float("-inf")  # the latest end of any stall recorded: ≥ every current stall's end
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self._clock()

    def stalled(self, start: float, end: float) -> None:
        """The platform held input back from ``start`` to ``end`` (times of this limiter's clock)."""
        if end <= start:
            return
        with self._lock:
            merged = []
            for s, e, _ in self._stalls:
                if e < start or s > end:
                    merged.append((s, e))
                else:
                    start, end = min(s, start), max(e, end)
            merged.append((start, end))
            merged.sort()
            now = self._clock()
            self._stalls_end = max(self._stalls_end, end)
            self._stalls = [(s, e, u) for s, e in merged
                            if (u := e + max(CREDIT_MIN_S, CREDIT_DRAIN_FACTOR * (e - s))) >= now]

    def take(self, key: str, n: float = 1.0) -> float:
        """Takes ``n`` tokens; returns 0.0 when allowed, else the seconds until they would be there."""
        now = self._clock()
        with self._lock:
            if self._stalls or self._banks:
                return self._take_with_credit(key, n, now)
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= n:
                self._buckets[key] = (tokens - n, now)
                return 0.0
            self._remember(key, tokens, now)
            return (n - tokens) / self.rate

    def _remember(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self._max_keys:  # bounded memory under a storm of ids
            self._buckets.clear()
            self._banks.clear()
        self._buckets[key] = (tokens, now)

    def _take_with_credit(self, key: str, n: float, now: float) -> float:
        stalls = self._stalls
        if stalls and stalls[0][2] < now:  # expired stalls go
            stalls = self._stalls = [st for st in stalls if st[2] >= now]
        if not stalls:  # every bank is past its use (a bank lives as long as its stall): to the fast path
            self._banks = {k: b for k, b in self._banks.items() if b[1] >= now}
        b = self._buckets.get(key)
        # a device first seen after a stall began (e.g. right after a restart) was idle since its start
        tokens, last = b if b is not None else (self.burst, min(now, stalls[0][0]) if stalls else now)
        bank, until = self._banks.get(key, (0.0, 0.0))
        away = 0.0
        # every reading of a device takes this path while a stall's credit is live (minutes after a restart
        # or a slow Kafka, adr/0104): a bucket refilled after the last stall ended has no overlap to add up,
        # and conditionals stand in for min/max calls (adr/0215)
        if last < self._stalls_end:
            for s, e, u in stalls:
                overlap = (e if e < now else now) - (s if s > last else last)
                if overlap > 0:
                    away += overlap
                    if u > until:
                        until = u
        elapsed = now - last - away
        if elapsed > 0.0:
            tokens += elapsed * self.rate
            if tokens > self.burst:
                tokens = self.burst
        elif tokens > self.burst:
            tokens = self.burst
        bank = bank + away * self.rate if until >= now else 0.0
        have = tokens + bank
        if have >= n:
            from_bank = bank if bank < n else n
            bank -= from_bank
            tokens -= n - from_bank
            wait = 0.0
        else:
            wait = (n - have) / self.rate
        self._remember(key, tokens, now)
        if bank > 0:
            self._banks[key] = (bank, until)
        else:
            self._banks.pop(key, None)
        return wait
