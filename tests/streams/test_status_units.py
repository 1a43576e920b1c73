"""The status agent's decisions without a broker (``streams.status.StatusTracker``, adr/0054, 0123):
transitions from connection events and readings, one status step per device per batch, table writes
debounced to a quarter timeout, and inactivity judged on the partition's event-time watermark."""

from __future__ import annotations

from schemas import codec, device_key, topics
from streams.registry import DeviceInfo
from streams.status import IDLE_GRACE_MS, StatusTracker, timeout_ms
from tests.streams.unitkit import MemoryState, Msg, check_encodes, encoded

KEY = device_key("t", "d")
TIMEOUT = 4000
T0 = 1_000_000


def tracker(timeout: int = TIMEOUT) -> tuple[StatusTracker, MemoryState]:
    state = MemoryState()
    return StatusTracker(state, lambda key: timeout), state


def event(kind: str, t: int, *, source: str = "mqtt", key: bytes = KEY, partition: int = 0) -> Msg:
    tenant, device = key.decode().split(":")
    return encoded("device_event", {"tenant_id": tenant, "device_id": device, "event_type": kind, "time": t,
                                    "source": source, "reason": None, "details": {}},
                   topics.DEVICE_EVENTS.name, key=key, partition=partition)


def reading(t: int, *, key: bytes = KEY, partition: int = 0, decoded: bool = True) -> Msg:
    tenant, device = key.decode().split(":")
    rec = {"tenant_id": tenant, "device_id": device, "event_time": t, "receive_time": t, "protocol": "mqtt",
           "values": {"v": 1.0}, "device_type": None, "tags": []}
    raw = codec("telemetry").encode(rec)
    return Msg(topics.TELEMETRY.name, partition, key, raw, rec if decoded else None)


def changes(emits) -> list[tuple[str, int]]:
    check_encodes(emits, {topics.DEVICE_EVENTS.name: "device_event"})
    return [(e.record["event_type"], e.record["time"]) for e in emits]


def test_connect_and_disconnect_emit_one_change_each():
    tr, state = tracker()
    out = tr.on_batch([event("CONNECTED", T0)], T0)
    assert changes(out) == [("ONLINE", T0)]
    assert out[0].key == KEY and out[0].record["source"] == "streams"
    assert out[0].record["reason"] == "connected reported by mqtt"
    assert tr.on_batch([event("ONLINE", T0 + 1)], T0) == [], "already online: no change, nothing sent"
    assert changes(tr.on_batch([event("DISCONNECTED", T0 + 2)], T0)) == [("OFFLINE", T0 + 2)]
    assert state[KEY]["online"] is False


def test_out_of_order_own_and_other_events_are_ignored():
    tr, state = tracker()
    tr.on_batch([event("CONNECTED", T0)], T0)
    assert tr.on_batch([event("DISCONNECTED", T0 - 5000)], T0) == [], "older than the connect: out of order"
    assert tr.on_batch([event("OFFLINE", T0 + 1, source="streams")], T0) == [], "its own output is not input"
    assert tr.on_batch([event("READ_ERROR", T0 + 2)], T0) == []
    garbage = Msg(topics.DEVICE_EVENTS.name, 0, KEY, b"not avro")
    assert tr.on_batch([garbage, Msg(topics.DEVICE_EVENTS.name, 0, None, b"")], T0) == []
    assert state[KEY]["online"] is True


def test_readings_bring_a_device_online_once_per_batch_at_the_first_reading_after_the_disconnect():
    tr, state = tracker()
    tr.on_batch([event("DISCONNECTED", T0)], T0)
    state.writes.clear()
    batch = [reading(T0 - 100), reading(T0 + 300), reading(T0 + 200, decoded=False), reading(T0 + 500)]
    assert changes(tr.on_batch(batch, T0)) == [("ONLINE", T0 + 300)]
    assert state[KEY]["last"] == T0 + 500
    assert len(state.writes) == 1, "one write for the batch, not one per reading"


def test_a_late_reading_from_before_the_disconnect_does_not_revive():
    tr, state = tracker()
    tr.on_batch([event("CONNECTED", T0), event("DISCONNECTED", T0 + 1000)], T0)
    assert tr.on_batch([reading(T0 + 999)], T0) == []
    assert state[KEY]["online"] is False


def test_readings_and_connection_events_keep_their_order_within_a_device():
    tr, _ = tracker()
    out = tr.on_batch([reading(T0), event("DISCONNECTED", T0 + 10), reading(T0 + 20)], T0)
    assert changes(out) == [("ONLINE", T0), ("OFFLINE", T0 + 10), ("ONLINE", T0 + 20)]


def test_activity_is_written_at_most_every_quarter_timeout():
    tr, state = tracker(timeout=4000)
    tr.on_batch([reading(T0)], T0)
    assert len(state.writes) == 1
    tr.on_batch([reading(T0 + 500)], T0)
    tr.on_batch([reading(T0 + 1000)], T0)
    assert len(state.writes) == 1, "within a quarter timeout of the saved activity: not written"
    tr.on_batch([reading(T0 + 1001)], T0)
    assert len(state.writes) == 2 and state[KEY]["saved_last"] == T0 + 1001


def test_inactivity_follows_the_partitions_event_time_watermark():
    tr, state = tracker(timeout=3000)
    tr.on_batch([reading(T0)], T0)
    assert tr.on_tick(T0 + 5000, {0}) == [], "wall time passes, but the watermark has not moved"
    other = device_key("t", "other")
    tr.on_batch([reading(T0 + 3000, key=other)], T0 + 5000)
    assert tr.on_tick(T0 + 5000, {0}) == [], "watermark exactly at last + timeout: not yet"
    tr.on_batch([reading(T0 + 3001, key=other)], T0 + 5000)
    out = tr.on_tick(T0 + 5000, {0})
    assert changes(out) == [("OFFLINE", T0 + 3000)], "stamped last activity + timeout"
    assert out[0].record["reason"] == "no activity for 3 s (event time)"
    assert state[KEY]["online"] is False and state[KEY]["conn"] == T0 + 3000
    assert tr.on_tick(T0 + 5000, {0}) == [], "offline once"
    assert tr.on_batch([reading(T0 + 2999)], T0) == [], "a reading older than the OFFLINE stamp does not revive"


def test_an_idle_partitions_watermark_follows_the_clock_and_only_owned_partitions_are_judged():
    tr, _ = tracker(timeout=3000)
    tr.on_batch([reading(T0, partition=2)], T0)
    idle = T0 + IDLE_GRACE_MS + 3001  # the watermark becomes wall - grace = T0 + 3001
    assert tr.on_tick(idle, {0, 1}) == [], "partition 2 is another worker's"
    assert tr.on_tick(idle - 1, {2}) == []
    assert changes(tr.on_tick(idle, {2})) == [("OFFLINE", T0 + 3000)]


def test_timeout_comes_from_the_device_then_its_type_then_the_default():
    by_type = {"pump": 60}
    assert timeout_ms(DeviceInfo("active", "pump", (), offline_after_s=5), by_type, 300) == 5000
    assert timeout_ms(DeviceInfo("active", "pump", ()), by_type, 300) == 60_000
    assert timeout_ms(DeviceInfo("active", "boiler", ()), by_type, 300) == 300_000
    assert timeout_ms(None, by_type, 300) == 300_000
