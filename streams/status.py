"""Device status agent: ONLINE/OFFLINE from connection events and from inactivity in event time (adr/0054).

Input: ``fleetstream.device-events`` (connectors' CONNECTED/ONLINE and DISCONNECTED/OFFLINE, incl. Last
Will) and ``fleetstream.telemetry`` (activity). Output: an ONLINE or OFFLINE device event with source
``streams`` on ``fleetstream.device-events`` whenever a device's status changes (the control plane's status
updater writes them to Postgres in batches).

Event time, not arrival time, decides:
- a connection event older than the device's latest connection event is ignored (out of order);
- a reading brings a device online only when its event time is after the latest disconnect, so a late
  reading buffered before the disconnect does not;
- a device goes offline when the partition's event-time watermark passes its last activity plus its
  timeout (registry attribute ``offline_after_s``, else ``Settings.status_timeouts_s[device_type]``, else
  ``status_default_timeout_s``). The watermark is the highest event time seen on the partition, advanced by
  the wall clock minus ``IDLE_GRACE_MS`` when the partition is idle, so a quiet fleet still goes offline.

The OFFLINE event carries event time ``last activity + timeout``. State per device lives in a Faust table
(written when the status changes, and at most every quarter timeout for activity, so the hot path does not
write a changelog record per reading).

The decisions are ``StatusTracker``'s (records, state and clock in, records to send out);
``register()`` wires it to Faust (adr/0123).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import faust

from runtime.settings import Settings
from schemas import ValueDeserializationError, codec, split_key, topics
from schemas.codec import telemetry_event_time

from . import bundles
from .bundles import Reading
from .registry import DeviceInfo, RegistryView
from .tables import owned_partitions
from .units import Emit, Outbox, State, TableState

log = logging.getLogger(__name__)

SOURCE = "streams"
UP, DOWN = frozenset({"CONNECTED", "ONLINE"}), frozenset({"DISCONNECTED", "OFFLINE"})
TELEMETRY = topics.TELEMETRY.name
DEVICE_EVENTS = topics.DEVICE_EVENTS.name
IDLE_GRACE_MS = 10_000
TICK_S = 1.0


def new_state(partition: int) -> dict:
    return {"online": None, "last": 0, "conn": 0, "saved_last": 0, "p": partition}


def on_connection(st: dict, up: bool, t: int) -> bool:
    """Applies a connection event at event time ``t``; returns whether the status changed."""
    if t < st["conn"]:
        return False  # older than what we already know: out of order
    st["conn"] = t
    if up:
        st["last"] = max(st["last"], t)
    changed = st["online"] is not up
    st["online"] = up
    return changed


def on_activity(st: dict, t: int) -> bool:
    """A reading at event time ``t``; returns whether it brought the device online."""
    if t > st["last"]:
        st["last"] = t
    if st["online"] is not True and t > st["conn"]:
        st["online"] = True
        return True
    return False


def expired(st: dict, watermark: int, timeout_ms: int) -> bool:
    return st["online"] is True and watermark - st["last"] > timeout_ms


def timeout_ms(info: DeviceInfo | None, by_type: dict[str, int], default_s: int) -> int:
    """A device's inactivity timeout: its own ``offline_after_s``, else its type's, else the default."""
    if info is not None:
        if info.offline_after_s:
            return info.offline_after_s * 1000
        if info.device_type in by_type:
            return by_type[info.device_type] * 1000
    return default_s * 1000


def status_event(key: bytes, online: bool, t: int, reason: str) -> Emit:
    tenant, device = split_key(key)
    return Emit(DEVICE_EVENTS, key, {"tenant_id": tenant, "device_id": device, "time": t, "source": SOURCE,
                                     "event_type": "ONLINE" if online else "OFFLINE", "reason": reason,
                                     "details": {}})


class StatusTracker:
    """The status decisions for the devices of the partitions a worker owns: ``on_batch`` for device
    events and readings, ``on_tick`` for inactivity; both return the status events to send.

    Besides the per-device state (``state``) it keeps each partition's event-time watermark and the wall
    time of its latest reading, which are not persisted: after a restart they start again from the
    readings."""

    def __init__(self, state: State, timeout_of: Callable[[bytes], int]):
        self.state, self.timeout_of = state, timeout_of
        self.watermarks: dict[int, int] = {}
        self.last_seen_wall: dict[int, int] = {}
        self.ecodec = codec("device_event")

    def on_batch(self, msgs: Sequence[Reading], wall: int) -> list[Emit]:
        """A batch of device events and telemetry readings (the device-activity agent's, adr/0050).

        Readings are summarised per device for the batch (latest event time, and the first event time
        that would bring the device online), so the table and the output see one activity step per device
        per batch rather than one per reading; a connection event applies the device's readings before it
        first, so the order of the two kinds within a device is kept (adr/0057)."""
        out: list[Emit] = []
        get = self.state.get
        activity: dict[bytes, list] = {}  # key -> [partition, latest t, first t after the last connection event]
        for msg in msgs:
            key = msg.key
            if key is None:
                continue
            if msg.topic == TELEMETRY:
                try:
                    t = msg.rec["event_time"] if msg.rec is not None else telemetry_event_time(msg.value)
                except (ValueDeserializationError, IndexError) as exc:
                    log.warning("device-status: skipping undecodable record on %s: %s", msg.topic, exc)
                    continue
                a = activity.get(key)
                if a is None:
                    st = get(key)
                    activity[key] = [msg.partition, t, t if t > (st["conn"] if st else 0) else None,
                                     st["conn"] if st else 0]
                else:
                    if t > a[1]:
                        a[1] = t
                    if a[2] is None and t > a[3]:
                        a[2] = t
                continue
            if key in activity:
                self._apply_activity(out, key, *activity.pop(key), wall)
            try:
                e = self.ecodec.decode(msg.value)
            except ValueDeserializationError as exc:
                log.warning("device-status: skipping undecodable record on %s: %s", msg.topic, exc)
                continue
            if e["source"] == SOURCE or (e["event_type"] not in UP and e["event_type"] not in DOWN):
                continue
            part, st = msg.partition, get(key)
            fresh = st is None
            if fresh:
                st = new_state(part)
            t = e["time"]
            changed = on_connection(st, e["event_type"] in UP, t)
            self._save(out, key, part, st, changed or fresh, t,
                       f"{e['event_type'].lower()} reported by {e['source']}" if changed else None)
        for key, a in activity.items():
            self._apply_activity(out, key, *a, wall)
        return out

    def _apply_activity(self, out: list[Emit], key: bytes, part: int, latest: int, first_new: int | None,
                        _conn: int, wall: int) -> None:
        if latest > self.watermarks.get(part, 0):
            self.watermarks[part] = latest
        self.last_seen_wall[part] = wall
        st = self.state.get(key)
        fresh = st is None
        if fresh:
            st = new_state(part)
        changed = on_activity(st, latest)
        self._save(out, key, part, st, changed or fresh, first_new if first_new is not None else latest,
                   "telemetry received" if changed else None)

    def _save(self, out: list[Emit], key: bytes, part: int, st: dict, must: bool, t: int,
              reason: str | None) -> None:
        """Writes the state when it changed (or at most every quarter timeout for activity); emits a change."""
        if must or st["last"] - st["saved_last"] > self.timeout_of(key) // 4:
            st["saved_last"], st["p"] = st["last"], part
            self.state.put(part, key, st)
        if reason is not None:
            out.append(status_event(key, st["online"], t, reason))

    def on_tick(self, wall: int, owned: set[int]) -> list[Emit]:
        """Online devices of the ``owned`` partitions whose last activity plus timeout the partition's
        watermark has passed go offline, stamped in event time."""
        out: list[Emit] = []
        for key, st in list(self.state.items()):
            if not st or st["online"] is not True or st["p"] not in owned:
                continue
            p = st["p"]
            wm = self.watermarks.get(p, 0)
            if wall - self.last_seen_wall.get(p, 0) > IDLE_GRACE_MS:
                wm = max(wm, wall - IDLE_GRACE_MS)  # an idle partition's watermark follows the clock
            limit = self.timeout_of(key)
            if expired(st, wm, limit):
                st["online"] = False
                st["conn"] = max(st["conn"], st["last"] + limit)
                self.state.put(p, key, st)
                out.append(status_event(key, False, st["last"] + limit,
                                        f"no activity for {limit // 1000} s (event time)"))
        return out


def register(app: faust.App, s: Settings, registry: RegistryView):
    table = app.Table("device-status", default=None, key_type=bytes, value_type=None,
                      partitions=app.conf.topic_partitions)

    def timeout_of(key: bytes) -> int:
        return timeout_ms(registry.lookup(*split_key(key)), s.status_timeouts_s, s.status_default_timeout_s)

    tracker = StatusTracker(TableState(table), timeout_of)
    outbox = Outbox(app, {DEVICE_EVENTS: "device_event"})

    async def handle(msgs: Sequence[Reading]) -> None:
        await outbox.send(tracker.on_batch(msgs, time.time_ns() // 1_000_000))

    @app.timer(TICK_S)
    async def inactivity():
        if not app.tables.recovery.completed.is_set():
            return
        mine = owned_partitions(app, bundles.topic_name(app.conf.id))
        await outbox.send(tracker.on_tick(time.time_ns() // 1_000_000, mine))

    return handle
