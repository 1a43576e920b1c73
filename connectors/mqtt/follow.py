"""One Kafka topic followed into the downlink's MQTT session: records are handled only while the session is up,
so what cannot be published stays unconsumed until it is (shadow deltas, rejection notices)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, Message

from schemas import ValueDeserializationError

log = logging.getLogger(__name__)


def follow_while_connected(consumer: Consumer, topic: str, connected: threading.Event, stop: threading.Event,
                           handle: Callable[[Message], None], what: str) -> None:
    """Runs until ``stop``; ``handle`` gets each record with a value. An undecodable record is logged and
    skipped; any other error ends the loop (logged), and the consumer is closed either way."""
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            if not connected.wait(0.5):
                continue
            for m in consumer.consume(200, 0.2):
                if m.error() or m.value() is None:
                    continue
                try:
                    handle(m)
                except ValueDeserializationError as exc:
                    log.warning("%s: skipping undecodable record on %s: %s", what, m.topic(), exc)
    except Exception:
        log.exception("%s stopped", what)
    finally:
        consumer.close()
