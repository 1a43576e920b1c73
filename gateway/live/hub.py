"""One Kafka consumer per gateway process, fanning live records out to connections by tenant (adr/0063).

The consumer thread reads telemetry, alerts and device events from the end of each partition (no group
commits: live delivery is "from now", resumption is the SSE replay's job) and hands each poll's records to
the event loop in one call. ``_dispatch`` never awaits: it offers each record to the tenant's subscribers,
whose bounded buffers apply their own overflow policy, so a slow connection never slows the others or the
consumer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from schemas import ValueDeserializationError, codec_by_fingerprint, topics

log = logging.getLogger(__name__)

# kind of live record per topic, and its short code in SSE event ids
KINDS = {topics.TELEMETRY.name: ("telemetry", "t"), topics.ALERTS.name: ("alert", "a"),
         topics.DEVICE_EVENTS.name: ("device_event", "e")}
CODES = {code: topic for topic, (_kind, code) in KINDS.items()}


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str  # telemetry | alert | device_event
    topic: str
    partition: int
    offset: int
    tenant_id: str
    device_id: str
    record: dict


class Subscriber:
    """A connection's bounded buffer and its interest.

    :param matches: which of the tenant's events this connection wants.
    :param maxsize: events held before the overflow policy applies.
    :param close_on_overflow: True: mark the subscriber overflowed and stop buffering (the connection
        closes; SSE clients resume with Last-Event-ID). False: drop new events and count them (WebSocket
        clients are told how many were dropped once they catch up)."""

    __slots__ = ("tenant_id", "matches", "maxsize", "close_on_overflow", "buf", "dropped", "overflowed", "_wake")

    def __init__(self, tenant_id: str, matches: Callable[[LiveEvent], bool], *, maxsize: int,
                 close_on_overflow: bool = False):
        self.tenant_id, self.matches, self.maxsize = tenant_id, matches, maxsize
        self.close_on_overflow = close_on_overflow
        self.buf: collections.deque[LiveEvent] = collections.deque()
        self.dropped = 0
        self.overflowed = False
        self._wake = asyncio.Event()

    def offer(self, ev: LiveEvent) -> None:
        if self.overflowed or not self.matches(ev):
            return
        if len(self.buf) >= self.maxsize:
            self.dropped += 1
            if self.close_on_overflow:
                self.overflowed = True
                self._wake.set()
            return
        self.buf.append(ev)
        self._wake.set()

    async def next_batch(self, timeout: float | None = None) -> list[LiveEvent]:
        """Everything buffered (possibly nothing after ``timeout`` or an overflow)."""
        if not self.buf and not self.overflowed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        out = list(self.buf)
        self.buf.clear()
        return out


class LiveHub:
    """:param bootstrap: Kafka bootstrap servers.
    :param queue_size: per-subscriber buffer (``Subscriber.maxsize``)."""

    def __init__(self, bootstrap: str, *, queue_size: int = 256):
        self.bootstrap, self.queue_size = bootstrap, queue_size
        self._subs: dict[str, set[Subscriber]] = collections.defaultdict(set)
        self.stats = {"events": 0, "delivered": 0, "dropped": 0, "subscribers": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._consume, name="live-hub", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def subscribe(self, sub: Subscriber) -> Subscriber:
        self._subs[sub.tenant_id].add(sub)
        self.stats["subscribers"] += 1
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.tenant_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self.stats["subscribers"] -= 1
            self.stats["dropped"] += sub.dropped
            if not subs:
                del self._subs[sub.tenant_id]

    # -- the consumer thread ----------------------------------------------------------------------------
    def _consume(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"fleetstream-live-{uuid.uuid4().hex}",
                      "enable.auto.commit": False, "fetch.wait.max.ms": 20, "enable.partition.eof": False})
        try:
            while not self._stop.is_set():
                try:
                    md = c.list_topics(timeout=5).topics
                    break
                except Exception:
                    log.warning("live hub: Kafka not reachable yet")
                    self._stop.wait(1)
            else:
                return
            assignment = [TopicPartition(t, p, OFFSET_END) for t in KINDS if t in md for p in md[t].partitions]
            c.assign(assignment)
            self.ready.set()
            while not self._stop.is_set():
                msgs = c.consume(1000, timeout=0.2)
                events = []
                for m in msgs:
                    if m.error():
                        continue
                    ev = decode(m.topic(), m.partition(), m.offset(), m.value())
                    if ev is not None:
                        events.append(ev)
                if events and self._loop is not None and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self._dispatch, events)
        finally:
            c.close()

    def _dispatch(self, events: list[LiveEvent]) -> None:
        for ev in events:
            self.stats["events"] += 1
            for sub in self._subs.get(ev.tenant_id, ()):
                before = sub.dropped
                sub.offer(ev)
                if sub.dropped == before:
                    self.stats["delivered"] += 1


def decode(topic: str, partition: int, offset: int, value: bytes) -> LiveEvent | None:
    try:
        rec = codec_by_fingerprint(value).decode(value)
    except ValueDeserializationError:
        return None
    kind = KINDS[topic][0]
    return LiveEvent(kind, topic, partition, offset, rec["tenant_id"], rec["device_id"], rec)


def to_json(ev: LiveEvent) -> dict:
    """The wire shape of a live event, the same over WebSocket, SSE and GraphQL."""
    r = ev.record
    if ev.kind == "telemetry":
        return {"type": "telemetry", "device_id": ev.device_id, "ts": r["event_time"], "values": r["values"]}
    if ev.kind == "alert":
        return {"type": "alert", "device_id": ev.device_id, "alert_id": r["alert_id"], "rule_id": r["rule_id"],
                "severity": r["severity"], "state": r["state"], "ts": r["time"], "message": r.get("message", "")}
    return {"type": "device_event", "device_id": ev.device_id, "event_type": r["event_type"], "ts": r["time"],
            "source": r["source"], "reason": r.get("reason")}
