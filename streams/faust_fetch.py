"""Batched fetches for the Faust worker's consumer (adr/0072).

faust-streaming builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and aiokafka's
``fetch_min_bytes=1`` and exposes neither, so under load it fetches the bundle and request topics in
tiny pieces, and the broker pays per request. This sets both on the consumer Faust creates, before it
starts (aiokafka reads them when it builds its fetcher in ``start()``).
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as driver

from runtime.kafka import AGENT_CONSUMER_AIOKAFKA as FETCH

_create = driver.AIOKafkaConsumerThread._create_worker_consumer


def _create_batched(self, transport):
    consumer = _create(self, transport)
    for name, value in FETCH.items():
        if not hasattr(consumer, f"_{name}"):  # another aiokafka version: leave its defaults alone
            return consumer
        setattr(consumer, f"_{name}", value)
    return consumer


def install() -> None:
    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_batched
