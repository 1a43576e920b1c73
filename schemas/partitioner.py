"""How every fleetstream producer picks a partition for a keyed record (adr/0141, amending adr/0050).

The rule is Apache Kafka's Java default for keyed records: ``toPositive(murmur2(key)) % partitions``
(``BuiltInPartitioner.partitionForKey``), which librdkafka calls ``murmur2_random`` and aiokafka's
``DefaultPartitioner`` implements. A record keyed ``tenant:device`` therefore lands on the same partition
whoever writes it: our confluent-kafka producers (``runtime.kafka`` sets ``murmur2_random``), the Faust
worker (``murmur2_partitioner``), a Java producer, Kafka Connect, Flink. A worker that owns partition *p*
owns every record and every table entry of the devices on *p* in every topic with the same partition count.

Records without a key go to a random partition (Java's sticky partitioner and librdkafka's ``_random``
suffix differ in how they pick, which matters to nobody: no unkeyed record carries an order).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache
from struct import Struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = {n: Struct(f"<{n}I") for n in range(0, 64)}


def murmur2(key: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as an unsigned 32-bit value (Java's int, two's complement, read unsigned)."""
    n = len(key)
    h = (_SEED ^ n) & _MASK
    words = n >> 2
    fmt = _WORDS.get(words) or Struct(f"<{words}I")
    for k in fmt.unpack_from(key):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = n & 3
    if tail:
        base = n & ~3
        if tail == 3:
            h ^= key[base + 2] << 16
        if tail >= 2:
            h ^= key[base + 1] << 8
        h ^= key[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


# A device's key repeats on every reading: validate groups each batch by partition (streams/validate.py), so
# the hash is remembered (~0.1 µs per reading instead of ~2 µs); a few MB at the bound.
_positive = lru_cache(maxsize=1 << 16)(lambda key: murmur2(key) & 0x7FFFFFFF)


def partition_for(key: bytes, count: int) -> int:
    """The partition of ``key`` in a topic of ``count`` partitions, as Java's default partitioner picks it."""
    return _positive(key) % count


def murmur2_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's partitioner signature (the Faust worker's ``producer_partitioner``): ``partition_for``."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[_positive(key) % len(all_partitions)]
