"""Kafka client settings shared by every fleetstream process on the hot path (adr/0072).

Measured on the 2-core machine (2026-11-26): the broker's CPU follows the number of requests, not records.
A consumer left at librdkafka's ``fetch.min.bytes=1`` re-fetches as soon as anything arrives, so at
5,000 msg/s it alone cost the broker 50–80 µs per record; letting the broker hold a fetch until 64 KiB
are ready or a short wait passes cost ~20 µs per record for produce and consume together, and 3 µs when
records flow freely. Every hot consumer therefore waits; the wait bounds the latency each hop may add.
"""

from __future__ import annotations

# A consumer of a topic every reading passes through (raw, validated telemetry). 20 ms per hop keeps
# publish → WebSocket (two consumer hops after the connector) well inside its 100 ms p99 budget.
HOT_FETCH_WAIT_MS = 20
FETCH_MIN_BYTES = 65536  # ≈500 telemetry records
HOT_CONSUMER: dict[str, int] = {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": HOT_FETCH_WAIT_MS}

# The telemetry sink: its batches last a second anyway, so a longer wait costs nothing and idles cheaper.
SINK_CONSUMER: dict[str, int] = {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": 100}

# aiokafka's names for the same two settings (the Faust worker's consumer)
HOT_CONSUMER_AIOKAFKA: dict[str, int] = {"fetch_min_bytes": FETCH_MIN_BYTES, "fetch_max_wait_ms": HOT_FETCH_WAIT_MS}

# A producer of the hot topics: one request per partition leader every few ms, not one per record.
HOT_PRODUCER: dict[str, int | str] = {"linger.ms": 5, "batch.num.messages": 10000}
