"""One Kafka consumer per gateway process, fanning live records out to connections by tenant (adr/0063).

The consumer thread reads telemetry, alerts and device events from the end of each partition (no group
commits: live delivery is "from now", resumption is the SSE replay's job) and hands each poll's records to
the event loop in one call, grouped by tenant. ``_dispatch`` never awaits: it offers each tenant's records
to that tenant's subscribers, whose bounded buffers apply their own overflow policy, so a slow connection
never slows the others or the consumer.

Every gateway reads the whole stream, but most records belong to tenants nobody is watching: the tenant is
read off the wire (the first field of all three records) and only watched tenants' records are decoded
(adr/0065). While nobody at all is watching (``IDLE_AFTER_S`` after the last subscriber left), the consumer
holds no partitions and sends the broker nothing: an idle hub's 20 ms fetches were a quarter of the broker's
idle requests (adr/0200). The first subscriber after that re-assigns every partition at its high watermark,
read at that moment; ``live()`` returns once the hub reads on behalf of everyone subscribed so far: every
record produced after it returned reaches them, so a caller that awaits it before telling its client "ready"
(or before reading the high watermark its replay stops at) loses nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, TopicPartition

from runtime.kafka import LIVE_CONSUMER, KafkaLike, clients
from schemas import ValueDeserializationError, codec, codec_for, topics
from schemas.wire import peek_string

log = logging.getLogger(__name__)

# kind of live record per topic, and its short code in SSE event ids
KINDS = {topics.TELEMETRY.name: ("telemetry", "t"), topics.ALERTS.name: ("alert", "a"),
         topics.DEVICE_EVENTS.name: ("device_event", "e")}
CODES = {code: topic for topic, (_kind, code) in KINDS.items()}
# the record each topic carries (others are still decoded by fingerprint)
_RECORDS = {topics.TELEMETRY.name: "telemetry", topics.ALERTS.name: "alert", topics.DEVICE_EVENTS.name: "device_event"}

# how long the consumer thread blocks for a first record before it looks at its stop flag again; what
# arrived with that record is taken without waiting, so the hub adds no delay of its own
POLL_S = 0.025
# how long the hub keeps reading after its last subscriber left (a reconnecting client finds it live)
IDLE_AFTER_S = 30.0
# how long ``live()`` waits for the consumer thread before going on as if it were live (Kafka down)
LIVE_WAIT_S = 5.0


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
        clients are told how many were dropped once they catch up).
    :param devices: the only devices ``matches`` can accept (None: any); lets the hub skip decoding the
        others. Changed later with ``LiveHub.set_devices``."""

    __slots__ = ("tenant_id", "matches", "maxsize", "close_on_overflow", "devices", "buf", "dropped", "overflowed",
                 "_wake")

    def __init__(self, tenant_id: str, matches: Callable[[LiveEvent], bool], *, maxsize: int,
                 close_on_overflow: bool = False, devices: frozenset[str] | None = None):
        self.tenant_id, self.matches, self.maxsize = tenant_id, matches, maxsize
        self.close_on_overflow = close_on_overflow
        self.devices = devices
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

    def offer_many(self, events: list[LiveEvent]) -> int:
        """``offer`` for a batch of the tenant's events; returns how many were buffered."""
        if self.overflowed:
            return 0
        matches, buf, taken = self.matches, self.buf, 0
        for ev in events:
            if not matches(ev):
                continue
            if len(buf) >= self.maxsize:
                self.dropped += 1
                if self.close_on_overflow:
                    self.overflowed = True
                    break
                continue
            buf.append(ev)
            taken += 1
        if taken or self.overflowed:
            self._wake.set()
        return taken

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
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param queue_size: per-subscriber buffer (``Subscriber.maxsize``).
    :param idle_after_s: how long the hub keeps its partitions after the last subscriber left."""

    def __init__(self, kafka: KafkaLike, *, queue_size: int = 256, idle_after_s: float = IDLE_AFTER_S):
        self.kafka, self.queue_size, self.idle_after_s = clients(kafka), queue_size, idle_after_s
        self._subs: dict[str, set[Subscriber]] = collections.defaultdict(set)
        # per watched tenant: the devices any of its subscribers can match (None: any). Replaced, never
        # mutated, so the consumer thread always reads a consistent value.
        self._interest: dict[str, frozenset[str] | None] = {}
        self.stats = {"events": 0, "delivered": 0, "dropped": 0, "subscribers": 0, "partitions": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        # subscribe() counts up ``_wanted`` after adding its subscriber; the consumer thread sets ``_served``
        # to a count it read before it saw subscribers while it held every partition: from then on a
        # subscriber counted up to ``_served`` gets every record produced after it subscribed
        self._wanted = 0
        self._served = 0
        self._wake = threading.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._consume, name="live-hub", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()  # an idle hub sleeps on it
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def subscribe(self, sub: Subscriber) -> Subscriber:
        self._subs[sub.tenant_id].add(sub)
        self.stats["subscribers"] += 1
        self._refresh_interest(sub.tenant_id)
        self._wanted += 1
        self._wake.set()
        return sub

    async def live(self) -> bool:
        """Waits until the hub reads on behalf of everyone subscribed so far (at once when it already did);
        False if its consumer did not get there within ``LIVE_WAIT_S`` (Kafka unreachable, hub not started)."""
        wanted = self._wanted
        deadline = time.monotonic() + LIVE_WAIT_S
        while self._served < wanted:
            if self._thread is None or not self._thread.is_alive() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.tenant_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self.stats["subscribers"] -= 1
            self.stats["dropped"] += sub.dropped
            if not subs:
                del self._subs[sub.tenant_id]
            self._refresh_interest(sub.tenant_id)

    def set_devices(self, sub: Subscriber, devices: frozenset[str] | None) -> None:
        """A subscriber's device interest changed (a WebSocket subscribe or unsubscribe message)."""
        sub.devices = devices
        self._refresh_interest(sub.tenant_id)

    def _refresh_interest(self, tenant_id: str) -> None:
        subs = self._subs.get(tenant_id)
        if not subs:
            self._interest.pop(tenant_id, None)
            return
        union: set[str] = set()
        for sub in subs:
            if sub.devices is None:
                self._interest[tenant_id] = None
                return
            union |= sub.devices
        self._interest[tenant_id] = frozenset(union)

    # -- the consumer thread ----------------------------------------------------------------------------
    def _consume(self) -> None:
        # the broker answers when 64 KiB are ready or 20 ms passed: at most 50 fetches a second at any load,
        # instead of one per handful of readings (adr/0072)
        c = self.kafka.consumer(f"fleetstream-live-{uuid.uuid4().hex}", LIVE_CONSUMER)
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
            partitions = [(t, p) for t in KINDS if t in md for p in md[t].partitions]
            self.ready.set()
            assigned, unwatched_since = False, time.monotonic()
            while not self._stop.is_set():
                wanted = self._wanted  # read before the subscribers: they include everyone it counts
                if self._subs:
                    unwatched_since = None
                    if not assigned:
                        c.assign(self._at_high_watermarks(c, partitions))
                        assigned, self.stats["partitions"] = True, len(partitions)
                    self._served = wanted
                elif unwatched_since is None:
                    unwatched_since = time.monotonic()
                elif assigned and time.monotonic() - unwatched_since >= self.idle_after_s:
                    c.unassign()
                    assigned, self.stats["partitions"] = False, 0
                if not assigned:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                # block for the first record only, then take what the last fetch brought: consume(n, t)
                # alone would hold every record until n arrived or t passed
                first = c.poll(POLL_S)
                if first is None:
                    continue
                msgs = [first, *c.consume(999, timeout=0)]
                if not msgs or not self._interest:
                    continue
                by_tenant = self._decode_watched(msgs)
                if by_tenant and self._loop is not None and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self._dispatch, by_tenant)
        finally:
            c.close()

    @staticmethod
    def _at_high_watermarks(c, partitions: list[tuple[str, int]]) -> list[TopicPartition]:
        """Every partition at its high watermark read now: a logical "end" would be resolved later, by the
        fetcher, and records produced in between would be skipped. A partition whose watermark cannot be
        read starts at the end as before."""
        out = []
        for t, p in partitions:
            tp = TopicPartition(t, p)
            try:
                offset = c.get_watermark_offsets(tp, timeout=5, cached=False)[1]
            except Exception:
                offset = OFFSET_END
            out.append(TopicPartition(t, p, offset))
        return out

    def _decode_watched(self, msgs: list) -> dict[str, list[LiveEvent]]:
        """The records some subscriber may want, decoded, by tenant. Runs in the consumer thread while the
        interest may change: a record polled before its subscriber existed was never due to it (and SSE
        replays up to a high watermark read after subscribing)."""
        interest = self._interest
        out: dict[str, list[LiveEvent]] = {}
        for m in msgs:
            if m.error():
                continue
            value = m.value()
            tenant = wire_tenant(value)
            if tenant is None or tenant not in interest:
                continue
            devices = interest.get(tenant)
            if devices is not None and wire_device(m.topic(), value) not in devices:
                continue
            ev = decode(m.topic(), m.partition(), m.offset(), value)
            if ev is not None:
                out.setdefault(ev.tenant_id, []).append(ev)
        return out

    def _dispatch(self, by_tenant: dict[str, list[LiveEvent]]) -> None:
        for tenant, events in by_tenant.items():
            self.stats["events"] += len(events)
            for sub in tuple(self._subs.get(tenant, ())):
                self.stats["delivered"] += sub.offer_many(events)


def wire_tenant(value: bytes | None) -> str | None:
    """The tenant of a telemetry, alert or device-event value without decoding it (``tenant_id`` is each
    record's first field); None if it is not there."""
    return peek_string(value, 0)


# which string field holds device_id: second in telemetry and device events, fourth in alerts
_DEVICE_FIELD = {topics.TELEMETRY.name: 1, topics.DEVICE_EVENTS.name: 1, topics.ALERTS.name: 3}


def wire_device(topic: str, value: bytes) -> str | None:
    """The device of a live record without decoding it (the leading fields are all strings); None if the
    value is not that shape (such a record would not decode either)."""
    field = _DEVICE_FIELD.get(topic)
    return None if field is None else peek_string(value, field)


def decode(topic: str, partition: int, offset: int, value: bytes) -> LiveEvent | None:
    try:
        name = _RECORDS.get(topic)
        c = codec(name) if name else None
        rec = (c if c is not None and c.matches(value) else codec_for(value)).decode(value)
    except (ValueDeserializationError, TypeError):
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
