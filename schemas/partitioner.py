"""How every fleetstream producer picks a partition (adr/0050).

Connectors and the gateway produce with confluent-kafka, whose default partitioner is librdkafka's
``consistent_random``: CRC-32 of the key modulo the partition count. Faust's producer (aiokafka) would use
murmur2, which would put a device's records on different partition numbers in different topics, and a
table keyed by device would then hold one device's state under several partitions. Faust is therefore
configured with the same CRC-32 rule, so ``tenant:device`` lands on the same partition number in every
topic with the same partition count, and a worker that owns partition *p* owns every record and every
table entry of the devices on *p*.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence


def partition_for(key: bytes, count: int) -> int:
    return zlib.crc32(key) % count


def crc32_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka partitioner signature; identical to librdkafka's ``consistent_random``."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[zlib.crc32(key) % len(all_partitions)]
