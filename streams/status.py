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
"""

from __future__ import annotations

import logging
import time

import faust

from runtime.settings import Settings
from schemas import ValueDeserializationError, codec, split_key, topics
from schemas.codec import telemetry_event_time

from . import bundles
from .registry import RegistryView
from .tables import owned_partitions, put

log = logging.getLogger(__name__)

SOURCE = "streams"
UP, DOWN = frozenset({"CONNECTED", "ONLINE"}), frozenset({"DISCONNECTED", "OFFLINE"})
TELEMETRY = topics.TELEMETRY.name
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


def register(app: faust.App, s: Settings, registry: RegistryView):
    events_out = app.topic(topics.DEVICE_EVENTS.name, key_type=bytes, value_type=bytes)
    table = app.Table("device-status", default=None, key_type=bytes, value_type=None,
                      partitions=app.conf.topic_partitions)
    ecodec = codec("device_event")
    watermarks: dict[int, int] = {}
    last_seen_wall: dict[int, int] = {}

    def timeout_ms(key: bytes) -> int:
        tenant, device = split_key(key)
        info = registry.lookup(tenant, device)
        if info is not None:
            if info.offline_after_s:
                return info.offline_after_s * 1000
            if info.device_type in s.status_timeouts_s:
                return s.status_timeouts_s[info.device_type] * 1000
        return s.status_default_timeout_s * 1000

    async def emit(key: bytes, online: bool, t: int, reason: str) -> None:
        tenant, device = split_key(key)
        rec = {"tenant_id": tenant, "device_id": device, "event_type": "ONLINE" if online else "OFFLINE",
               "time": t, "source": SOURCE, "reason": reason, "details": {}}
        await events_out.send(key=key, value=ecodec.encode(rec))

    async def handle(msgs) -> None:
        """A batch of device events and telemetry readings (the device-activity agent's, adr/0050).

        Readings are summarised per device for the batch (latest event time, and the first event time
        that would bring the device online), so the table and the output see one activity step per device
        per batch rather than one per reading; a connection event applies the device's readings before it
        first, so the order of the two kinds within a device is kept (adr/0057)."""
        wall = time.time_ns() // 1_000_000
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
                    st = table.data.get(key)
                    activity[key] = [msg.partition, t, t if t > (st["conn"] if st else 0) else None,
                                     st["conn"] if st else 0]
                else:
                    if t > a[1]:
                        a[1] = t
                    if a[2] is None and t > a[3]:
                        a[2] = t
                continue
            if key in activity:
                await apply_activity(key, *activity.pop(key), wall)
            try:
                e = ecodec.decode(msg.value)
            except ValueDeserializationError as exc:
                log.warning("device-status: skipping undecodable record on %s: %s", msg.topic, exc)
                continue
            if e["source"] == SOURCE or (e["event_type"] not in UP and e["event_type"] not in DOWN):
                continue
            part, st = msg.partition, table.data.get(key)
            fresh = st is None
            if fresh:
                st = new_state(part)
            t = e["time"]
            changed = on_connection(st, e["event_type"] in UP, t)
            await save(key, part, st, changed or fresh, t, f"{e['event_type'].lower()} reported by {e['source']}"
                       if changed else None)
        for key, a in activity.items():
            await apply_activity(key, *a, wall)

    async def apply_activity(key: bytes, part: int, latest: int, first_new: int | None, _conn: int,
                             wall: int) -> None:
        if latest > watermarks.get(part, 0):
            watermarks[part] = latest
        last_seen_wall[part] = wall
        st = table.data.get(key)
        fresh = st is None
        if fresh:
            st = new_state(part)
        changed = on_activity(st, latest)
        await save(key, part, st, changed or fresh, first_new if first_new is not None else latest,
                   "telemetry received" if changed else None)

    async def save(key: bytes, part: int, st: dict, must: bool, t: int, reason: str | None) -> None:
        """Writes the state when it changed (or at most every quarter timeout for activity); emits a change."""
        if must or st["last"] - st["saved_last"] > timeout_ms(key) // 4:
            st["saved_last"], st["p"] = st["last"], part
            put(table, part, key, st)
        if reason is not None:
            await emit(key, st["online"], t, reason)

    @app.timer(TICK_S)
    async def inactivity():
        if not app.tables.recovery.completed.is_set():
            return
        wall = time.time_ns() // 1_000_000
        mine = owned_partitions(app, bundles.topic_name(app.conf.id))
        for key, st in list(table.data.items()):
            if not st or st["online"] is not True or st["p"] not in mine:
                continue
            p = st["p"]
            wm = watermarks.get(p, 0)
            if wall - last_seen_wall.get(p, 0) > IDLE_GRACE_MS:
                wm = max(wm, wall - IDLE_GRACE_MS)  # an idle partition's watermark follows the clock
            limit = timeout_ms(key)
            if expired(st, wm, limit):
                st["online"] = False
                st["conn"] = max(st["conn"], st["last"] + limit)
                put(table, p, key, st)
                await emit(key, False, st["last"] + limit, f"no activity for {limit // 1000} s (event time)")

    return handle
