"""How the gateway talks to the stream agents (adr/0050): it writes requests to Kafka and reads the
agents' state from compacted topics into an in-memory view.

- Writes: commands to ``fleetstream.command-requests``, desired shadow changes to
  ``fleetstream.shadow-updates`` (each with a ``request_id``), rules to ``fleetstream.rules``.
- Reads: ``fleetstream.shadows`` (latest document per device), ``fleetstream.command-states`` (latest state
  per command) and ``fleetstream.alerts`` are followed from the beginning by one compacted-topic follower
  per gateway process (``runtime.compacted``, adr/0125); every gateway instance holds the whole view, so any
  instance answers any tenant. The view keeps each record's Avro bytes as they came and decodes on read: a
  third to a half of the memory the decoded dicts took (adr/0137). Finished commands are bounded: the newest
  ``finished_per_device`` per device, none finished longer ago than ``command_retention_s`` (adr/0192); live
  ones are always held.
- A shadow PATCH with ``If-Match`` is a request/response over Kafka: the gateway registers the request id,
  produces the update, and the shadow agent's next document for that device carries the request id and
  its outcome (``applied`` or ``version_mismatch``), which the waiting request receives.

Partitioning: the factory's producer uses Java's default for keyed records, murmur2 of ``tenant:device``
(librdkafka's ``murmur2_random``), the rule the stream agents are configured to share (``schemas/partitioner.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sys
import threading
import time
from typing import Any

from runtime.compacted import CompactedFollower
from runtime.kafka import CONTROL_PRODUCER, KafkaLike, clients
from schemas import ValueDeserializationError, codec, codec_for, split_key, topics

log = logging.getLogger(__name__)

_RANK = {"ACTIVE": 0, "ACKNOWLEDGED": 1, "CLEARED": 2}
# a command's final states (the command agent's FINAL, streams/commands.py; the gateway does not import streams)
FINISHED = frozenset({"succeeded", "failed", "timed_out", "expired"})
COMMAND_RETENTION_S = 7 * 86400
FINISHED_PER_DEVICE = 20
SWEEP_EVERY_S = 60.0


class StreamsClient:
    """:param kafka: the process's Kafka clients (``settings.kafka``). Call ``start`` once, ``close`` at shutdown.
    :param command_retention_s: a finished command leaves the view this long after it finished.
    :param finished_per_device: finished commands held per device (the newest); older ones leave the view."""

    def __init__(self, kafka: KafkaLike, *, command_retention_s: float = COMMAND_RETENTION_S,
                 finished_per_device: int = FINISHED_PER_DEVICE):
        self.kafka = clients(kafka)
        self._init_view(command_retention_s, finished_per_device)
        self._stop = threading.Event()
        self._producer = self.kafka.producer(CONTROL_PRODUCER, client_id="fleetstream-gateway-streams")
        self._poller = threading.Thread(target=self._poll, name="streams-client-producer", daemon=True)
        self._view = CompactedFollower(
            self.kafka, [topics.SHADOWS.name, topics.COMMAND_STATES.name, topics.ALERTS.name],
            name="streams-client-view", group_id="fleetstream-gateway-view", on_record=self._apply, poll_s=0.1)
        self.caught_up = self._view.caught_up

    def _init_view(self, command_retention_s: float = COMMAND_RETENTION_S,
                   finished_per_device: int = FINISHED_PER_DEVICE) -> None:
        """The in-memory view alone (what the memory benchmark builds without Kafka clients)."""
        # Avro values as they came (adr/0137); read through shadow(), command(), device_commands(), alert(s)
        self.shadows: dict[tuple[str, str], bytes] = {}
        self.commands: dict[tuple[str, str], dict[str, bytes]] = {}
        self.alerts: dict[str, dict[str, bytes]] = {}  # tenant → alert id → latest Alert record
        # per device: finished command id → when it finished (epoch ms), in the order they finished (adr/0192)
        self.finished: dict[tuple[str, str], dict[str, int]] = {}
        self.command_retention_ms = int(command_retention_s * 1000)
        self.finished_per_device = max(0, finished_per_device)
        self._swept_at = time.monotonic()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._lock = threading.Lock()
        self.on_record: list = []  # extra (topic, key, value) hooks, e.g. the rules view

    def start(self) -> StreamsClient:
        self._poller.start()
        self._view.start()
        return self

    def close(self) -> None:
        self._producer.flush(5)
        self._stop.set()
        self._poller.join(5)
        self._view.stop()

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
        return _decode(self.shadows.get((tenant_id, device_id)))

    def command(self, tenant_id: str, device_id: str, command_id: str) -> dict | None:
        st = _decode(self.commands.get((tenant_id, device_id), {}).get(command_id))
        return st if st is not None and self._held(st, _now_ms()) else None

    def device_commands(self, tenant_id: str, device_id: str) -> list[dict]:
        now = _now_ms()
        return [st for st in (_decode(v) for v in tuple(self.commands.get((tenant_id, device_id), {}).values()))
                if self._held(st, now)]

    def _held(self, st: dict, now: int) -> bool:
        """Reads see the retention exactly; the sweep frees the memory within ``SWEEP_EVERY_S``."""
        return st["status"] not in FINISHED or st["updated_at"] >= now - self.command_retention_ms

    def alert(self, tenant_id: str, alert_id: str) -> dict | None:
        return _decode(self.alerts.get(tenant_id, {}).get(alert_id))

    def tenant_alerts(self, tenant_id: str) -> list[dict]:
        return [_decode(v) for v in tuple(self.alerts.get(tenant_id, {}).values())]

    def apply_alert(self, a: dict, value: bytes | None = None) -> None:
        """Latest state per alert; never backwards (ACTIVE → ACKNOWLEDGED → CLEARED). ``value``: ``a`` as
        Avro, when the caller has it."""
        mine = self.alerts.setdefault(_intern(a["tenant_id"]), {})
        cur = _decode(mine.get(a["alert_id"]))
        if cur is None or _RANK[a["state"]] >= _RANK[cur["state"]]:
            mine[a["alert_id"]] = value if value is not None else codec("alert").encode(a)

    # -- the view -------------------------------------------------------------------------------------
    def _poll(self) -> None:
        # poll() returns as soon as a delivery report is served, so a long timeout adds no latency; it
        # only bounds how long close() waits for this thread
        while not self._stop.is_set():
            self._producer.poll(0.5)

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if topic == topics.COMMAND_STATES.name and key:  # a command the agent deleted (key tenant:device:id)
                head, _, cid = key.decode(errors="replace").rpartition(":")
                tenant, _, device = head.partition(":")
                self._forget_command((tenant, device), cid)
            return
        try:
            if topic == topics.SHADOWS.name:
                doc = codec("shadow_document").decode(value)
                self.shadows[(_intern(doc["tenant_id"]), doc["device_id"])] = value
                if doc["request_id"]:
                    with self._lock:
                        waiter = self._waiters.pop(doc["request_id"], None)
                    if waiter is not None:
                        loop, fut = waiter
                        loop.call_soon_threadsafe(_resolve, fut, doc)
            elif topic == topics.COMMAND_STATES.name:
                self._apply_command(codec("command_state").decode(value), value)
            elif topic == topics.ALERTS.name:
                self.apply_alert(codec("alert").decode(value), value)
        except ValueDeserializationError as exc:
            log.warning("streams view: skipping undecodable record on %s (%r): %s", topic, key, exc)
        if time.monotonic() - self._swept_at >= SWEEP_EVERY_S:
            self.sweep_commands()
        for hook in self.on_record:
            hook(topic, key, value)

    def _apply_command(self, st: dict, value: bytes) -> None:
        """Latest state per command; a finished one joins its device's finished list, whose oldest leave the
        view beyond ``finished_per_device``; one that finished before the retention (a replay) is not kept."""
        device, cid = (_intern(st["tenant_id"]), st["device_id"]), st["command_id"]
        if st["status"] not in FINISHED:
            self.commands.setdefault(device, {})[cid] = value
            return
        finished_at = st["updated_at"]
        if finished_at < _now_ms() - self.command_retention_ms:
            self._forget_command(device, cid)
            return
        mine = self.commands.setdefault(device, {})
        mine.pop(cid, None)  # re-inserted, so both dicts share this id's string object (~85 B a command)
        mine[cid] = value
        done = self.finished.setdefault(device, {})
        done.pop(cid, None)  # (re-)appended: the list stays in the order commands finished
        done[cid] = finished_at
        while len(done) > self.finished_per_device:
            self._forget_command(device, next(iter(done)))

    def _forget_command(self, device: tuple[str, str], cid: str) -> None:
        mine, done = self.commands.get(device), self.finished.get(device)
        if mine is not None:
            mine.pop(cid, None)
            if not mine:
                del self.commands[device]
        if done is not None:
            done.pop(cid, None)
            if not done:
                del self.finished[device]

    def sweep_commands(self, now_ms: int | None = None) -> int:
        """Drops finished commands older than the retention (each device's list is in finishing order, so
        the sweep stops at the first younger one); returns how many. Runs on the follower's thread, at most
        once a ``SWEEP_EVERY_S``."""
        self._swept_at = time.monotonic()
        cutoff = (now_ms if now_ms is not None else _now_ms()) - self.command_retention_ms
        dropped = 0
        for device, done in list(self.finished.items()):
            expired = []
            for cid, finished_at in done.items():
                if finished_at >= cutoff:
                    break
                expired.append(cid)
            for cid in expired:
                self._forget_command(device, cid)
            dropped += len(expired)
        return dropped


def _decode(value: bytes | None) -> dict | None:
    """A held record, decoded with the writer schema its frame names (any registered version)."""
    return None if value is None else codec_for(value).decode(value)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _intern(tenant_id: str) -> str:
    """One string object per tenant for every key that names it (thousands of devices each)."""
    return sys.intern(tenant_id)


def _resolve(fut: asyncio.Future, doc: dict) -> None:
    if not fut.done():
        fut.set_result(doc)


def parse_json(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


__all__ = ["StreamsClient", "parse_json", "split_key"]
