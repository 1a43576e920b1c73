"""The latest values of recently read devices, kept in memory by the process that writes them (adr/0185).

Only for a process that hosts the telemetry sink (the gateway with chdb): the sink tells the cache which
(tenant, device) pairs each insert touched once that insert has returned, and the cache forgets them. A read
takes the cache's entry or, without one, reads ``telemetry_latest`` and offers what it read back, which the
cache keeps only when no insert touched that device while the read ran (else the read may predate the
insert). So an answer is never older than what ClickHouse held when the request started, a restart
starts from an empty cache (every first read goes to ClickHouse), and a tenant reaches only its own
entries: the key is the tenant from the token and the device, never the device alone.

A process without the sink (a ClickHouse server with its own sink role) must not use it: nothing would
tell it about new values.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable

Key = tuple[str, str]  # (tenant_id, device_id)


class LatestCache:
    """:param max_devices: entries kept (least recently used go first).
    :param history: insert rounds remembered for reads in flight; a read that started longer ago than that
        is answered but not kept."""

    def __init__(self, *, max_devices: int = 50_000, history: int = 1024):
        self.max_devices = max_devices
        self._lock = threading.Lock()
        self._values: collections.OrderedDict[Key, tuple] = collections.OrderedDict()
        self._round = 0
        self._recent: collections.deque[tuple[int, frozenset[Key]]] = collections.deque(maxlen=history)
        self.stats = {"hits": 0, "misses": 0, "kept": 0, "refused": 0}

    def round(self) -> int:
        """Take this before reading ClickHouse; give it to ``offer``."""
        return self._round

    def get(self, key: Key) -> tuple | None:
        with self._lock:
            values = self._values.get(key)
            if values is None:
                self.stats["misses"] += 1
                return None
            self._values.move_to_end(key)
            self.stats["hits"] += 1
            return values

    def offer(self, key: Key, values: tuple, since: int) -> bool:
        """Keeps ``values`` read from ClickHouse for ``key`` unless an insert touched it after round ``since``."""
        with self._lock:
            if since != self._round and not self._untouched_since(key, since):
                self.stats["refused"] += 1
                return False
            self._values[key] = values
            self._values.move_to_end(key)
            while len(self._values) > self.max_devices:
                self._values.popitem(last=False)
            self.stats["kept"] += 1
            return True

    def _untouched_since(self, key: Key, since: int) -> bool:
        if not self._recent or self._recent[0][0] > since + 1:
            return False  # rounds after `since` are no longer all remembered: cannot tell
        return not any(r > since and key in keys for r, keys in self._recent)

    def written(self, keys: Iterable[Key]) -> None:
        """An insert of these devices' readings has returned: their entries are stale."""
        keys = frozenset(keys)
        if not keys:
            return
        with self._lock:
            self._round += 1
            self._recent.append((self._round, keys))
            for k in keys:
                self._values.pop(k, None)

    def __len__(self) -> int:
        return len(self._values)
