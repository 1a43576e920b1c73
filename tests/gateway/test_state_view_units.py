"""The gateway's state view keeps Avro bytes and decodes on read (adr/0137): what it answers is what it was
given, alerts never move backwards, and a record of another registered writer version still reads back."""

from __future__ import annotations

from gateway.streams_client import StreamsClient
from schemas import codec, topics


def _view() -> StreamsClient:
    view = StreamsClient.__new__(StreamsClient)  # the view alone: no Kafka clients
    view._init_view()
    return view


def _alert(state: str, t: int) -> dict:
    return {"tenant_id": "t1", "alert_id": "a1", "rule_id": "r1", "device_id": "d1", "severity": "MAJOR",
            "state": state, "time": t, "message": "hot", "details_json": "{}"}


def test_records_are_held_as_bytes_and_read_back_decoded():
    view = _view()
    doc = {"tenant_id": "t1", "device_id": "d1", "version": 3, "desired_json": '{"a": 1}', "reported_json": "{}",
           "delta_json": '{"a": 1}', "metadata_json": "{}", "time": 5, "publish_delta": True, "request_id": None,
           "outcome": None}
    st = {"tenant_id": "t1", "device_id": "d1", "command_id": "c1", "name": "blink", "params_json": "{}",
          "status": "queued", "attempt": 0, "max_attempts": 3, "created_at": 1, "updated_at": 1, "timeout_ms": 1000,
          "expires_at": None, "idempotency_key": None, "protocol": None, "result_json": None, "reason": None,
          "history_json": "[]"}
    view._apply(topics.SHADOWS.name, b"t1:d1", codec("shadow_document").encode(doc))
    view._apply(topics.COMMAND_STATES.name, b"t1:d1", codec("command_state").encode(st))
    view._apply(topics.ALERTS.name, b"t1:d1", codec("alert").encode(_alert("ACTIVE", 1)))
    assert all(isinstance(v, bytes) for v in view.shadows.values())
    assert view.shadow("t1", "d1") == doc
    assert view.command("t1", "d1", "c1") == st and view.device_commands("t1", "d1") == [st]
    assert view.alert("t1", "a1")["state"] == "ACTIVE" and len(view.tenant_alerts("t1")) == 1
    assert view.shadow("t2", "d1") is None and view.command("t1", "d1", "nope") is None
    assert view.alert("t2", "a1") is None and view.tenant_alerts("t2") == []


def test_an_alert_never_moves_backwards():
    view = _view()
    view.apply_alert(_alert("ACKNOWLEDGED", 2))
    view._apply(topics.ALERTS.name, b"t1:d1", codec("alert").encode(_alert("ACTIVE", 1)))  # late, older state
    assert view.alert("t1", "a1")["state"] == "ACKNOWLEDGED"
    view.apply_alert(_alert("CLEARED", 3))
    assert view.alert("t1", "a1")["state"] == "CLEARED"
