"""How the gateway talks to the stream agents (adr/0050): it writes requests to Kafka and reads the
agents' state from compacted topics into an in-memory view.

- Writes: commands to ``fleetstream.command-requests``, desired shadow changes to
  ``fleetstream.shadow-updates`` (each with a ``request_id``), rules to ``fleetstream.rules``.
- Reads: ``fleetstream.shadows`` (latest document per device) and ``fleetstream.command-states``
  (latest state per command) are followed from the beginning by one thread per gateway process; every
  gateway instance holds the whole view, so any instance answers any tenant.
- A shadow PATCH with ``If-Match`` is a request/response over Kafka: the gateway registers the request id,
  produces the update, and the shadow agent's next document for that device carries the request id and
  its outcome (``applied`` or ``version_mismatch``), which the waiting request receives.

Partitioning: the producer uses librdkafka's ``consistent_random`` (CRC-32 of ``tenant:device``), the
rule the stream agents are configured to share (``schemas/partitioner.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from runtime.kafka import CONTROL_PRODUCER, READER, KafkaLike, clients
from schemas import ValueDeserializationError, codec, split_key, topics

log = logging.getLogger(__name__)

_RANK = {"ACTIVE": 0, "ACKNOWLEDGED": 1, "CLEARED": 2}


class StreamsClient:
    """:param kafka: the process's Kafka clients (``settings.kafka``). Call ``start`` once, ``close`` at shutdown."""

    def __init__(self, kafka: KafkaLike):
        self.kafka = clients(kafka)
        self.shadows: dict[tuple[str, str], dict] = {}
        self.commands: dict[tuple[str, str], dict[str, dict]] = {}
        self.alerts: dict[str, dict[str, dict]] = {}  # tenant → alert id → latest Alert record
        self.caught_up = threading.Event()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._producer = self.kafka.producer(CONTROL_PRODUCER, client_id="fleetstream-gateway-streams")
        self._threads = [threading.Thread(target=self._poll, name="streams-client-producer", daemon=True),
                         threading.Thread(target=self._follow, name="streams-client-view", daemon=True)]
        self.on_record: list = []  # extra (topic, key, value) hooks, e.g. the rules view

    def start(self) -> StreamsClient:
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        self._producer.flush(5)
        self._stop.set()
        for t in self._threads:
            t.join(5)

    # -- writes ---------------------------------------------------------------------------------------
    async def produce(self, topic: str, key: bytes, value: bytes | None) -> None:
        """Returns once Kafka has the record; raises RuntimeError if it could not be written."""
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def done(err, _msg) -> None:
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(RuntimeError(str(err)))

        self._producer.produce(topic, value, key, on_delivery=done)
        await asyncio.wait_for(asyncio.wrap_future(fut), 15)

    def expect(self, request_id: str) -> asyncio.Future:
        """Registers interest in the agent's answer to ``request_id`` (call before producing)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            self._waiters[request_id] = (loop, fut)
        return fut

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._waiters.pop(request_id, None)

    # -- reads ----------------------------------------------------------------------------------------
    def shadow(self, tenant_id: str, device_id: str) -> dict | None:
        return self.shadows.get((tenant_id, device_id))

    def command(self, tenant_id: str, device_id: str, command_id: str) -> dict | None:
        return self.commands.get((tenant_id, device_id), {}).get(command_id)

    def device_commands(self, tenant_id: str, device_id: str) -> list[dict]:
        return list(self.commands.get((tenant_id, device_id), {}).values())

    def apply_alert(self, a: dict) -> None:
        """Latest state per alert; never backwards (ACTIVE → ACKNOWLEDGED → CLEARED)."""
        mine = self.alerts.setdefault(a["tenant_id"], {})
        cur = mine.get(a["alert_id"])
        if cur is None or _RANK[a["state"]] >= _RANK[cur["state"]]:
            mine[a["alert_id"]] = a

    # -- the view -------------------------------------------------------------------------------------
    def _poll(self) -> None:
        # poll() returns as soon as a delivery report is served, so a long timeout adds no latency; it
        # only bounds how long close() waits for this thread
        while not self._stop.is_set():
            self._producer.poll(0.5)

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            if topic == topics.SHADOWS.name:
                doc = codec("shadow_document").decode(value)
                self.shadows[(doc["tenant_id"], doc["device_id"])] = doc
                if doc["request_id"]:
                    with self._lock:
                        waiter = self._waiters.pop(doc["request_id"], None)
                    if waiter is not None:
                        loop, fut = waiter
                        loop.call_soon_threadsafe(_resolve, fut, doc)
            elif topic == topics.COMMAND_STATES.name:
                st = codec("command_state").decode(value)
                self.commands.setdefault((st["tenant_id"], st["device_id"]), {})[st["command_id"]] = st
            elif topic == topics.ALERTS.name:
                self.apply_alert(codec("alert").decode(value))
        except ValueDeserializationError as exc:
            log.warning("streams view: skipping undecodable record on %s (%r): %s", topic, key, exc)
        for hook in self.on_record:
            hook(topic, key, value)

    def _follow(self) -> None:
        names = [topics.SHADOWS.name, topics.COMMAND_STATES.name, topics.ALERTS.name]
        c = self.kafka.consumer("fleetstream-gateway-view", READER)
        try:
            while True:  # a broker that has just started may not lead its partitions yet
                try:
                    tps, ends = [], {}
                    for name in names:
                        md = c.list_topics(name, timeout=30).topics[name]
                        for p in md.partitions:
                            tp = TopicPartition(name, p, OFFSET_BEGINNING)
                            tps.append(tp)
                            ends[(name, p)] = c.get_watermark_offsets(tp, timeout=10)[1]
                    break
                except KafkaException as exc:
                    log.warning("streams view: waiting for topics: %s", exc)
                    if self._stop.wait(1):
                        return
            c.assign(tps)
            pending = {k for k, hi in ends.items() if hi > 0}
            if not pending:
                self.caught_up.set()
            while not self._stop.is_set():
                for m in c.consume(500, 0.1):
                    if m.error():
                        continue
                    self._apply(m.topic(), m.key(), m.value())
                    if pending and m.offset() + 1 >= ends.get((m.topic(), m.partition()), 0):
                        pending.discard((m.topic(), m.partition()))
                        if not pending:
                            self.caught_up.set()
        except Exception:
            log.exception("streams view stopped")
        finally:
            c.close()


def _resolve(fut: asyncio.Future, doc: dict) -> None:
    if not fut.done():
        fut.set_result(doc)


def parse_json(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


__all__ = ["StreamsClient", "parse_json", "split_key"]
