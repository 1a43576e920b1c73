"""Latency samples → percentiles, without numpy (the report must not depend on optional packages)."""

from __future__ import annotations

import random


class Reservoir:
    """Keeps a uniform sample of at most ``cap`` values plus exact count and max: enough for p99 at the
    rates measured here while bounding memory on long runs."""

    def __init__(self, cap: int = 200_000):
        self.cap, self.count, self.max, self.values = cap, 0, None, []

    def add(self, v: float) -> None:
        self.count += 1
        if self.max is None or v > self.max:
            self.max = v
        if len(self.values) < self.cap:
            self.values.append(v)
        else:
            j = random.randrange(self.count)
            if j < self.cap:
                self.values[j] = v

    def summary(self) -> dict:
        if not self.values:
            return {"count": 0}
        v = sorted(self.values)
        return {"count": self.count, "p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99),
                "max": self.max, "mean": round(sum(v) / len(v), 1)}


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]
