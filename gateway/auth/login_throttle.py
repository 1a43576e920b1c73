"""Failed password sign-ins per client address (adr/0166). The per-account lockout (adr/0160) stops guessing
one user's password; it does not stop one address trying a few passwords on every account of every tenant
(spraying), and every attempt costs an argon2id verification. Past ``max_failures`` failures within
``window_s`` an address is answered 429 before any password work until its oldest failure leaves the window.

Per gateway process and in memory: with N replicas an address gets up to N × ``max_failures`` tries per
window, and a restart forgets. Used from the event loop only (no lock)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 20
WINDOW_S = 300.0
MAX_ADDRESSES = 100_000  # bounded memory under a flood from many addresses: the least recent are forgotten


class LoginThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 max_addresses: int = MAX_ADDRESSES, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window_s, self.max_addresses, self.clock = max_failures, window_s, max_addresses, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int:
        """Whole seconds until ``address`` may try again; 0 when it may now."""
        times = self._recent(address)
        if times is None or len(times) < self.max_failures:
            return 0
        return max(1, math.ceil(times[0] + self.window_s - self.clock()))

    def failed(self, address: str) -> None:
        times = self._recent(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        times.append(self.clock())
        self._failures.move_to_end(address)

    def _recent(self, address: str) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        cutoff = self.clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times
