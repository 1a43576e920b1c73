"""A burst of MQTT messages is one batch: every record is written, invalid payloads are dead-lettered with
their reason beside the valid ones, and the QoS1 packet ids are acknowledged once, only after Kafka
confirmed every record of the batch (adr/0042, adr/0045). No broker or Kafka: the uplink is a fake that
confirms when the test says so."""

from __future__ import annotations

import json
import time

from connectors.base import Admission
from connectors.mqtt import connector as mqtt_connector_module
from connectors.mqtt.connector import MqttConnector
from connectors.mqtt.settings import MqttSettings
from connectors.ratelimit import TokenBuckets
from connectors.uplink import Batch
from tests.utils.clock import Clock


class FakeUplink:
    source = "mqtt"

    def __init__(self):
        self.written: list[tuple[str, dict, object]] = []

    def _write(self, kind: str, rec: dict, done) -> None:
        if type(done) is Batch:
            done.add()
        self.written.append((kind, rec, done))

    def telemetry(self, tenant_id, device_id, event_time, values, received_ms, done=None, *, count=True):
        self._write("telemetry", {"tenant_id": tenant_id, "device_id": device_id, "values": values}, done)

    def dead_letter(self, *, code, reason, raw, tenant_id=None, device_id=None, origin=None, done=None):
        self._write("dlq", {"code": code, "reason": reason, "raw": raw, "device_id": device_id}, done)

    def device_event(self, tenant_id, device_id, event_type, *, reason=None, details=None, done=None):
        self._write("event", {"device_id": device_id, "event_type": event_type}, done)

    def confirm(self, error: str | None = None) -> None:
        for _, _, done in self.written:
            done.delivered(error, None)
            error = None  # only the first record fails when asked to


class Acks:
    def __init__(self):
        self.calls: list[tuple[int, list[int]]] = []
        self.redelivered: list[int] = []

    def __call__(self, generation, packet_ids):
        self.calls.append((generation, list(packet_ids)))


def _connector(admission=None) -> tuple[MqttConnector, FakeUplink, Acks]:
    up = FakeUplink()
    conn = MqttConnector(up, MqttSettings(), admission)
    acks = Acks()
    conn.subscriber.ack = acks
    conn.subscriber.redeliver = acks.redelivered.append
    return conn, up, acks


def _msg(i: int, payload: bytes, device="d1", qos=1, channel="telemetry", dup=False):
    return (f"fs/t1/{device}/{channel}", qos, i, payload, dup)


def test_a_burst_is_acknowledged_once_and_only_after_kafka_confirmed_all_of_it():
    conn, up, acks = _connector()
    ts = int(time.time() * 1000)
    msgs = [_msg(i, json.dumps({"ts": ts, "values": {"seq": i}}).encode()) for i in range(1, 201)]
    msgs.append(_msg(0, b'{"values":{"x":1}}', qos=0))  # QoS0: written, never acknowledged
    conn._on_batch(3, msgs)
    assert len(up.written) == 201 and all(k == "telemetry" for k, _, _ in up.written)
    assert acks.calls == []  # nothing is acknowledged before Kafka confirmed it
    for _, _, done in up.written[:-1]:
        done.delivered(None, None)
    assert acks.calls == []  # one record still unconfirmed
    up.written[-1][2].delivered(None, None)
    assert acks.calls == [(3, list(range(1, 201)))]
    assert sorted(r["values"]["seq"] for _, r, _ in up.written[:-1]) == [float(i) for i in range(1, 201)]


def test_invalid_payloads_in_a_batch_are_dead_lettered_and_the_valid_ones_land():
    conn, up, acks = _connector()
    msgs = [_msg(1, b'{"values":{"a":1}}'), _msg(2, b"not json"), _msg(3, b'{"values":{"a":"x","b":[1]}}'),
            _msg(4, b'{"values":{"b":2}}'), _msg(5, b"online", channel="status"),
            _msg(6, b"sideways", channel="status"), ("elsewhere/x", 1, 7, b"{}", False)]
    conn._on_batch(1, msgs)
    kinds = [(k, r.get("code")) for k, r, _ in up.written]
    assert kinds == [("telemetry", None), ("dlq", "invalid_json"), ("dlq", "wrong_type"), ("telemetry", None),
                     ("event", None), ("dlq", "invalid_status"), ("dlq", "bad_topic")]
    bad = up.written[1][1]
    assert bad["raw"] == b"not json" and "not valid UTF-8 JSON" in bad["reason"] and bad["device_id"] == "d1"
    up.confirm()
    assert acks.calls == [(1, [1, 2, 3, 4, 5, 6, 7])]  # dead letters are safe in Kafka too: acknowledged


def test_a_kafka_error_leaves_the_whole_batch_unacknowledged():
    conn, up, acks = _connector()
    conn._on_batch(1, [_msg(i, b'{"values":{"a":1}}') for i in range(1, 4)])
    up.confirm(error="broker down")
    assert acks.calls == []  # the broker keeps them in the session and redelivers them ...
    assert acks.redelivered == [1]  # ... once the connector reconnects, which it asks for


def test_refused_devices_are_dead_lettered_whole_within_the_batch():
    conn, up, acks = _connector(Admission(None, TokenBuckets(rate=1, burst=2), require_registered=False))
    conn._on_batch(1, [_msg(i, b'{"values":{"a":1}}') for i in range(1, 5)])
    assert [r.get("code") for _, r, _ in up.written] == [None, None, "rate_limited", "rate_limited"]
    up.confirm()
    assert acks.calls == [(1, [1, 2, 3, 4])]


def test_batch_fires_once_whatever_the_order_of_seal_and_confirmations():
    calls = []
    b = Batch(calls.append)
    b.seal()
    assert calls == [None]  # nothing written: done at once
    calls.clear()
    b = Batch(calls.append)
    b.add()
    b.add()
    b.delivered(None, None)
    b.delivered(None, None)
    assert calls == []  # not sealed yet: more records may follow
    b.seal()
    assert calls == [None]


def test_one_message_that_raises_is_dead_lettered_and_its_neighbours_are_acknowledged():
    """A bug on one message (here the encoder failing for one tenant) never leaves its batch unsealed."""
    conn, up, acks = _connector()
    real = up.telemetry

    def telemetry(tenant_id, *a, **kw):
        if tenant_id == "boom":
            raise RuntimeError("encoder bug")
        return real(tenant_id, *a, **kw)

    up.telemetry = telemetry
    boom = ("fs/boom/d/telemetry", 1, 2, b'{"values":{"a":1}}', False)
    conn._on_batch(1, [_msg(1, b'{"values":{"a":1}}'), boom, _msg(3, b'{"values":{"a":2}}')])
    kinds = [(k, r.get("code")) for k, r, _ in up.written]
    assert kinds == [("telemetry", None), ("dlq", "invalid_payload"), ("telemetry", None)]
    assert "encoder bug" in up.written[1][1]["reason"]
    up.confirm()
    assert acks.calls == [(1, [1, 2, 3])]


def test_a_message_failing_outside_admission_is_dead_lettered_as_internal_error():
    conn, up, acks = _connector()
    conn.handle_status = lambda *a: (_ for _ in ()).throw(ValueError("status bug"))  # noqa: B901
    conn._on_batch(4, [_msg(1, b"online", channel="status"), _msg(2, b'{"values":{"a":1}}')])
    assert [(k, r.get("code")) for k, r, _ in up.written] == [("dlq", "internal_error"), ("telemetry", None)]
    assert "status bug" in up.written[0][1]["reason"]
    up.confirm()
    assert acks.calls == [(4, [1, 2])]


def test_redelivered_messages_are_not_charged_to_the_rate_limit_again():
    conn, up, acks = _connector(Admission(None, TokenBuckets(rate=1, burst=2, clock=Clock()),
                                          require_registered=False))
    conn._on_batch(1, [_msg(i, b'{"values":{"a":1}}') for i in (1, 2)])  # first delivery: the whole burst
    conn._on_batch(2, [_msg(i, b'{"values":{"a":1}}', dup=True) for i in (1, 2)])  # the broker resends them
    conn._on_batch(2, [_msg(3, b'{"values":{"a":1}}')])  # a new message: the bucket is empty
    assert [r.get("code") for _, r, _ in up.written] == [None, None, None, None, "rate_limited"]


def test_a_slow_kafka_confirmation_and_a_reconnect_are_credited_as_stalls(tmp_path):
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock)
    up = FakeUplink()
    conn = MqttConnector(up, MqttSettings(state_dir=str(tmp_path)),
                         Admission(None, buckets, require_registered=False))
    conn.subscriber.ack = Acks()
    conn._on_batch(1, [_msg(1, b'{"values":{"a":1}}')])
    clock.t += 0.5
    up.confirm()  # a healthy confirmation: no stall
    assert buckets._stalls == []
    conn._on_batch(1, [_msg(2, b'{"values":{"a":1}}')])
    clock.t += 30
    up.written[-1][2].delivered(None, None)  # Kafka took 30 s: the broker queued devices' messages meanwhile
    assert [(s, e) for s, e, _ in buckets._stalls] == [(1000.5, 1030.5)]
    conn._on_connected(True, clock.t - 5)  # back after a 5 s disconnection
    assert [(s, e) for s, e, _ in buckets._stalls] == [(1000.5, 1030.5)]  # (within the last stall: merged)
    clock.t += 100
    conn._on_connected(True, clock.t - 5)
    assert [(s, e) for s, e, _ in buckets._stalls][-1] == (clock.t - 5, clock.t)


def test_a_restarted_connector_credits_the_time_its_predecessor_was_away(tmp_path):
    (tmp_path / "c1.alive").write_text(repr(time.time() - 40))  # the predecessor's last heartbeat
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock)
    conn = MqttConnector(FakeUplink(), MqttSettings(client_id="c1", state_dir=str(tmp_path)),
                         Admission(None, buckets, require_registered=False))
    conn._last_alive = mqtt_connector_module._read_alive(tmp_path / "c1.alive")
    conn._on_connected(True, None)  # first connection of this process, the session was kept
    (start, end, _), = buckets._stalls
    assert end == clock.t and 39 <= end - start <= 45
    unknown = TokenBuckets(rate=1, burst=1, clock=clock)
    conn2 = MqttConnector(FakeUplink(), MqttSettings(client_id="c2", state_dir=str(tmp_path),
                                                     away_credit_s=60),
                          Admission(None, unknown, require_registered=False))
    conn2._on_connected(True, None)  # no heartbeat: the configured credit
    assert [(s, e) for s, e, _ in unknown._stalls] == [(clock.t - 60, clock.t)]
    conn2._on_connected(False, None)  # a new session holds no backlog: nothing more
    assert len(unknown._stalls) == 1
