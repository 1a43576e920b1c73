"""A sink's verdict on a record it cannot store (adr/0115 amended): the record goes to ``fleetstream.dlq`` with
the reason and its original bytes before the sink commits past it, so a refused or unreadable record is
kept and listed like any other refusal instead of only logged."""

from __future__ import annotations

from confluent_kafka import KafkaException

from runtime.kafka import KafkaLike, clients
from schemas import codec, topics
from schemas.dead_letter import dead_letter, dead_letter_key
from schemas.limits import MAX_PAYLOAD_BYTES

FLUSH_S = 30.0


class DeadLetters:
    def __init__(self, kafka: KafkaLike, source: str):
        self.kafka, self.source = clients(kafka), source
        self._codec = codec("dead_letter")
        self._producer = None  # made at the first refusal: most sinks never need it

    def send(self, *, topic: str, partition: int, offset: int, raw: bytes, code: str, reason: str,
             tenant_id: str | None = None, device_id: str | None = None) -> None:
        """Returns once Kafka has the dead letter (acks=all); raises otherwise, and the caller retries."""
        rec = dead_letter(source=self.source, code=code, reason=reason, raw=raw[:MAX_PAYLOAD_BYTES],
                          tenant_id=tenant_id, device_id=device_id, origin=f"{topic}[{partition}]@{offset}")
        if self._producer is None:
            self._producer = self.kafka.producer()
        failed: list = []
        self._producer.produce(topics.DEAD_LETTER.name, key=dead_letter_key(rec), value=self._codec.encode(rec),
                               on_delivery=lambda err, _msg: failed.append(err) if err else None)
        if self._producer.flush(FLUSH_S) or failed:
            raise KafkaException(failed[0]) if failed else TimeoutError("dead letter not acknowledged in time")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(FLUSH_S)
