"""Everything a connector sends towards Kafka goes through one ``UplinkPublisher``.

It owns the producer, encodes records, keys them tenant-first and reports each write's outcome to a
callback, so protocols can acknowledge their peer only once Kafka has the data (MQTT QoS1, HTTP 202).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from runtime import observability as obs
from runtime.kafka import UPLINK_PRODUCER, KafkaLike, clients
from schemas import codec, device_key, topics
from schemas.dead_letter import clean_text, dead_letter, dead_letter_key
from schemas.limits import MAX_PAYLOAD_BYTES
from schemas.telemetry_wire import TelemetryEncoder

Done = Callable[[Exception | None], None]

# A dead letter keeps at most this much of the refused input, so it always fits a Kafka record (the producer's
# message.max.bytes is 1,000,000): a payload within the platform's limit is kept whole; a bigger one keeps its
# first bytes, and its size goes into the reason and the ``fs-raw-size`` header (adr/0103).
DLQ_MAX_RAW_BYTES = MAX_PAYLOAD_BYTES
RAW_SIZE_HEADER = "fs-raw-size"


class AllDone:
    """Calls ``done`` once, after ``pending`` writes have all reported: with None if every one succeeded,
    else with the first error. Lets a protocol answer its peer once per message, not once per record."""

    __slots__ = ("pending", "error", "done", "lock")

    def __init__(self, pending: int, done: Done):
        self.pending, self.error, self.done, self.lock = pending, None, done, threading.Lock()
        if pending == 0:
            done(None)

    def __call__(self, err: Exception | None) -> None:
        with self.lock:
            if err is not None and self.error is None:
                self.error = err
            self.pending -= 1
            fire = self.pending == 0
        if fire:
            self.done(self.error)


class Batch:
    """One ``done`` for however many records are written until ``seal()``: with None once Kafka confirmed
    them all, else with the first error. Passed as ``done`` to the ``UplinkPublisher`` methods, it is
    handed to the producer as the delivery callback itself, so a burst of messages costs one object and
    one answer to the peer instead of a closure, an ``AllDone`` and an acknowledgement per message."""

    __slots__ = ("pending", "error", "done", "lock", "sealed", "source", "ingested")

    def __init__(self, done: Done, source: str = ""):
        self.pending, self.error, self.done, self.sealed = 0, None, done, False
        self.lock, self.source = threading.Lock(), source
        self.ingested: dict[str, int] = {}  # readings per tenant, counted into the metric once at seal()

    def count(self, tenant_id: str, n: int) -> None:
        self.ingested[tenant_id] = self.ingested.get(tenant_id, 0) + n

    def add(self) -> None:
        with self.lock:
            self.pending += 1

    def delivered(self, err: KafkaError | None, _msg) -> None:
        if err is not None:
            obs.record_delivery(self.source, err)
        with self.lock:
            if err is not None and self.error is None:
                self.error = RuntimeError(str(err))
            self.pending -= 1
            fire = self.sealed and self.pending == 0
        if fire:
            self.done(self.error)

    def fail(self, err: Exception) -> None:
        """A record that could not even be handed to the producer: the batch ends with this error."""
        with self.lock:
            if self.error is None:
                self.error = err

    def seal(self) -> None:
        """No more records: fires now if every one written so far is already confirmed."""
        for tenant_id, n in self.ingested.items():
            obs.record_ingest(self.source, tenant_id, n)
        with self.lock:
            self.sealed = True
            fire = self.pending == 0
        if fire:
            self.done(self.error)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class UplinkPublisher:
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param source: connector type written into records and headers (``mqtt``, ``modbus``, ...).
    :param instance: which connector instance wrote a record (header ``fs-instance``): tracing, and the
        proof in the MQTT takeover test of who wrote what."""

    def __init__(self, kafka: KafkaLike, source: str, *, instance: str | None = None,
                 extra_config: dict[str, Any] | None = None):
        self.source = source
        self._telemetry = TelemetryEncoder(source)  # byte-identical to codec("telemetry"), ~5x cheaper
        self._dead = codec("dead_letter")
        self._event = codec("device_event")
        self._ack = codec("command_ack")
        # idempotent, linger 5 ms: at most one produce request per partition per 5 ms (adr/0072)
        self._producer = clients(kafka).producer(UPLINK_PRODUCER, extra_config or {}, client_id=f"fleetstream-{source}")
        self._headers = [("fs-source", source.encode())]
        if instance:
            self._headers.append(("fs-instance", instance.encode()))
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name=f"{source}-kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _produce(self, topic: str, key: bytes | None, value: bytes, done: Done | Batch | None,
                 extra_headers: list[tuple[str, bytes]] | None = None) -> None:
        if type(done) is Batch:
            done.add()
            on_delivery = done.delivered
        else:
            def on_delivery(err: KafkaError | None, _msg) -> None:
                obs.record_delivery(self.source, err)
                if done is not None:
                    done(None if err is None else RuntimeError(str(err)))

        headers = self._headers if extra_headers is None else [*self._headers, *extra_headers]
        if (trace_id := obs.current_trace_id()) is not None:  # e.g. HTTP ingest: W3C trace into Kafka (adr/0094)
            headers = [*headers, ("traceparent", obs.new_traceparent(trace_id).encode())]
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: wait for the poller to serve deliveries rather than drop
                time.sleep(0.01)

    def telemetry(self, tenant_id: str, device_id: str, event_time: int, values: dict,
                  received_ms: int, done: Done | Batch | None = None, *, count: bool = True) -> None:
        """:param count: add to the ingest metric here; batch callers count once per burst instead."""
        value = self._telemetry.encode(tenant_id, device_id, event_time, received_ms, values)
        self._produce(topics.TELEMETRY_RAW.name, device_key(tenant_id, device_id), value, done)
        if count:
            obs.record_ingest(self.source, tenant_id)

    def dead_letter(self, *, code: str, reason: str, raw: bytes, tenant_id: str | None = None,
                    device_id: str | None = None, origin: str | None = None, done: Done | None = None) -> None:
        """Always a record Kafka takes: texts cleaned and bounded, ``raw`` cut to ``DLQ_MAX_RAW_BYTES``."""
        extra = None
        reason = reason or "refused without a reason (a platform bug: please report it)"
        if len(raw) > DLQ_MAX_RAW_BYTES:
            extra = [(RAW_SIZE_HEADER, str(len(raw)).encode())]
            reason = f"{reason} [raw keeps the first {DLQ_MAX_RAW_BYTES} of {len(raw)} bytes]"
            raw = raw[:DLQ_MAX_RAW_BYTES]
        rec = dead_letter(source=self.source, code=code, reason=reason, raw=raw, tenant_id=tenant_id,
                          device_id=device_id, origin=origin, time_ms=now_ms())
        self._produce(topics.DEAD_LETTER.name, dead_letter_key(rec), self._dead.encode(rec), done, extra)
        obs.record_rejected(self.source, rec["reason_code"])

    def device_event(self, tenant_id: str, device_id: str, event_type: str, *, reason: str | None = None,
                     details: dict[str, str] | None = None, done: Done | None = None, at_ms: int | None = None) -> None:
        """:param at_ms: when it happened, if not now (a site connector's OFFLINE is stamped with the device's
            last reading, so ``last_seen`` is the last reading, adr/0151)."""
        details = {clean_text(str(k), 100): clean_text(str(v), 500)
                   for k, v in list((details or {}).items())[:50]}
        rec = {"tenant_id": tenant_id, "device_id": device_id, "event_type": event_type,
               "time": now_ms() if at_ms is None else at_ms,
               "source": self.source, "reason": reason and clean_text(reason), "details": details}
        self._produce(topics.DEVICE_EVENTS.name, device_key(tenant_id, device_id), self._event.encode(rec), done)

    def command_ack(self, tenant_id: str, device_id: str, command_id: str, status: str, *,
                    result_json: str | None = None, reason: str | None = None, done: Done | None = None) -> None:
        rec = {"tenant_id": tenant_id, "device_id": device_id, "command_id": command_id, "status": status,
               "time": now_ms(), "result_json": result_json, "reason": reason}
        self._produce(topics.COMMAND_ACKS.name, device_key(tenant_id, device_id), self._ack.encode(rec), done)

    def flush(self, timeout: float = 10.0) -> int:
        return self._producer.flush(timeout)

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._poller.join(2)
