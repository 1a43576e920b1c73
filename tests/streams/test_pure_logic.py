"""Pure decision logic of the agents, without a broker: what a rule author, an operator and a device
integrator rely on at the edges (equality on states, polygons, missing metrics, command backoff and
expiry, late acknowledgements, out-of-order connection events, reading an event time without decoding)."""

from __future__ import annotations

import time

from schemas import codec
from schemas.rules import evaluate, haversine_m, in_scope
from streams import commands, status
from streams.shadows import apply_update, delta_of, empty


def test_threshold_on_states_and_missing_metrics():
    cond = {"type": "threshold", "metric": "door", "op": "==", "value": "open"}
    assert evaluate(cond, {"door": "open"}, 1, {}) is True
    assert evaluate(cond, {"door": "closed"}, 1, {}) is False
    assert evaluate(cond, {"temp": 1.0}, 1, {}) is None, "a reading without the metric says nothing"
    gt = {"type": "threshold", "metric": "t", "op": ">", "value": 5.0}
    assert evaluate(gt, {"t": "hot"}, 1, {}) is None, "a string is not compared with a number"
    assert evaluate(gt, {"t": True}, 1, {}) is None, "a boolean is not a number"


def test_combinations_with_unknowns():
    a = {"type": "threshold", "metric": "a", "op": ">", "value": 0.0}
    b = {"type": "threshold", "metric": "b", "op": ">", "value": 0.0}
    assert evaluate({"type": "all", "conditions": [a, b]}, {"a": 1.0}, 1, {}) is None
    assert evaluate({"type": "all", "conditions": [a, b]}, {"a": -1.0}, 1, {}) is False
    assert evaluate({"type": "any", "conditions": [a, b]}, {"a": 1.0}, 1, {}) is True
    assert evaluate({"type": "any", "conditions": [a, b]}, {"a": -1.0}, 1, {}) is None


def test_geofence_polygon_edges_and_distance():
    square = {"type": "geofence", "polygon": [[0, 0], [0, 1], [1, 1], [1, 0]], "trigger": "inside"}
    assert evaluate(square, {"lat": 0.5, "lon": 0.5}, 1, {}) is True
    assert evaluate(square, {"lat": 1.5, "lon": 0.5}, 1, {}) is False
    assert 110_000 < haversine_m(0, 0, 1, 0) < 112_000


def test_rate_needs_two_readings_in_event_time_order():
    cond = {"type": "rate", "metric": "v", "op": ">", "value": 1.0, "per_s": 60}  # > 1 unit per minute
    st = {}
    assert evaluate(cond, {"v": 0.0}, 0, st) is None
    assert evaluate(cond, {"v": 0.5}, 60_000, st) is False
    assert evaluate(cond, {"v": 3.0}, 120_000, st) is True
    assert evaluate(cond, {"v": 9.0}, 120_000, st) is None, "same timestamp: no rate"


def test_scope_by_device_type_and_tag():
    scope = {"device_types": ["boiler"], "tags": ["site-a", "site-b"]}
    assert in_scope(scope, "d", "boiler", ["site-b"])
    assert not in_scope(scope, "d", "pump", ["site-b"])
    assert not in_scope(scope, "d", "boiler", [])
    assert in_scope({}, "any", None, [])


def _cmd(now, **kw):
    req = {"tenant_id": "t", "device_id": "d", "command_id": "c", "name": "n", "params_json": "{}", "created_at": now,
           "timeout_ms": 1000, "expires_at": None, "attempt": 0, "idempotency_key": None, "protocol": None,
           "max_attempts": 3, **kw}
    return commands.new_state(req, 0, now)


def test_command_backoff_and_give_up():
    now = 1_000_000
    st = _cmd(now)
    assert commands.on_tick(st, now) == "deliver" and st["attempt"] == 1
    assert commands.on_tick(st, now + 999) is None
    commands.on_tick(st, now + 1000)  # unanswered: wait 1 s before the retry
    assert st["status"] == "queued" and st["due"] == now + 2000
    assert commands.on_tick(st, now + 2000) == "deliver" and st["attempt"] == 2
    commands.on_tick(st, now + 3000)
    assert st["due"] == now + 5000, "second backoff is 2 s"
    assert commands.on_tick(st, now + 5000) == "deliver"
    commands.on_tick(st, now + 6000)
    assert st["status"] == "timed_out"
    assert [commands.backoff_ms(n) for n in (1, 2, 3, 10)] == [1000, 2000, 4000, 60_000]


def test_command_expiry_and_late_acks():
    now = 1_000_000
    st = _cmd(now, expires_at=now + 500)
    commands.on_tick(st, now)
    assert st["due"] == now + 500, "the TTL cuts the ack wait short"
    commands.on_tick(st, now + 500)
    assert st["status"] == "expired"
    assert not commands.apply_ack(st, {"status": "SUCCEEDED", "reason": None, "result_json": None}, now + 600)
    st = _cmd(now)
    commands.on_tick(st, now)
    assert commands.apply_ack(st, {"status": "SUCCEEDED", "reason": None, "result_json": "1"}, now + 10)
    assert not commands.apply_ack(st, {"status": "ACKNOWLEDGED", "reason": None, "result_json": None}, now + 20)
    assert st["status"] == "succeeded"


def test_shadow_merge_version_and_limit():
    doc = empty(0)
    assert apply_update(doc, "desired", {"a": 1, "b": 2}, 10, None) == "applied" and doc["version"] == 1
    assert apply_update(doc, "desired", {"a": 1}, 11, None) == "unchanged" and doc["version"] == 1
    assert apply_update(doc, "reported", {"a": 1}, 12, 0) == "version_mismatch"
    assert apply_update(doc, "reported", {"a": 1}, 12, None) == "applied"
    assert delta_of(doc) == {"b": 2}
    assert apply_update(doc, "desired", {"b": None}, 13, 2) == "applied" and delta_of(doc) == {}
    assert apply_update(doc, "desired", {"big": "x" * 70_000}, 14, None) == "too_large" and doc["version"] == 3


def test_connection_events_in_event_time_order():
    st = status.new_state(0)
    assert status.on_connection(st, True, 2000)
    assert not status.on_connection(st, False, 1000), "an older disconnect arriving late is ignored"
    assert st["online"] is True
    assert status.on_connection(st, False, 3000)
    assert not status.on_activity(st, 2500), "a reading from before the disconnect does not revive it"
    assert status.on_activity(st, 3500)


def test_event_time_read_without_decoding():
    now = int(time.time() * 1000)
    raw = codec("telemetry").encode({"tenant_id": "t" * 36, "device_id": "dev-1", "event_time": now, "receive_time": now,
                                     "protocol": "mqtt", "values": {"x": 1.0}, "device_type": None, "tags": []})
    assert status.telemetry_event_time(raw) == now
