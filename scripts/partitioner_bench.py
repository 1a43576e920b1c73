"""µs per reading for validate's bundle grouping key → partition (adr/0141): CRC-32 (before), murmur2 uncached,
and ``partition_for`` (murmur2, cached per key; after). Best of N interleaved runs over 10,000 readings of
1,000 devices. Usage: python scripts/partitioner_bench.py [runs]"""

from __future__ import annotations

import sys
import time
import uuid
import zlib

from schemas.partitioner import murmur2, partition_for

devices = [f"{uuid.uuid4()}:device-{i}".encode() for i in range(1000)]
readings = devices * 10


def crc32_rule() -> None:
    for k in readings:
        zlib.crc32(k) % 6


def murmur2_uncached() -> None:
    for k in readings:
        (murmur2(k) & 0x7FFFFFFF) % 6


def partition_for_cached() -> None:
    for k in readings:
        partition_for(k, 6)


cases = {"crc32 (before)": crc32_rule, "murmur2, uncached": murmur2_uncached,
         "partition_for, cached (after)": partition_for_cached}
best = dict.fromkeys(cases, float("inf"))
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
    for name, fn in cases.items():
        t0 = time.perf_counter()
        fn()
        best[name] = min(best[name], (time.perf_counter() - t0) / len(readings) * 1e6)
for name, us in best.items():
    print(f"{name:<32}{us:8.3f} µs/reading")
