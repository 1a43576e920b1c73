"""Every gateway message gets a verdict (adr/0157, adr/0103): per sub-device, through the connector's batch
path, with a fake uplink and registry (the real-broker test is test_gateway_devices.py)."""

from __future__ import annotations

import json

import pytest

from connectors.base import Admission
from connectors.mqtt.connector import MqttConnector
from connectors.mqtt.settings import MqttSettings
from tests.connectors.mqtt.test_batch import FakeUplink

T = "t1"


class Registry:
    def __init__(self, entries):
        self.entries = entries

    def get(self, tenant_id, device_id):
        return self.entries.get(device_id) if tenant_id == T else None


def _run(registry, channel, payload, gateway="gw1"):
    up = FakeUplink()
    conn = MqttConnector(up, MqttSettings(), Admission(Registry(registry), require_registered=False))
    conn.subscriber.ack = lambda *_: None
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    conn._on_batch(1, [(f"fs/{T}/{gateway}/{channel}", 1, 1, raw, False)])
    return [(k, r.get("device_id"), r.get("code") or r.get("event_type") or r.get("values")) for k, r, _ in up.written]


GW = {"gw1": {"status": "active", "attributes": {"gateway": "true", "gateway_max_devices": "1"}}}


def test_each_sub_device_gets_its_own_verdict():
    got = _run(GW, "gateway/telemetry", {"a": {"values": {"t": 1}}, "b": {"values": {"t": 2}},
                                         "c/d": {"values": {"t": 3}}})
    assert ("event", "gw1.a", "PROVISIONED") in got and ("telemetry", "gw1.a", {"t": 1.0}) in got
    assert ("dlq", "gw1", "gateway_device_limit") in got  # b: the limit is 1
    assert ("dlq", "gw1", "bad_sub_device") in got  # a slash never makes an id
    assert not any(k == "telemetry" and d != "gw1.a" for k, d, _ in got)


@pytest.mark.parametrize(("registry", "channel", "payload", "code"), [
    ({"gw1": {"status": "active", "attributes": {}}}, "gateway/telemetry", {"a": {"values": {"t": 1}}}, "not_a_gateway"),
    ({}, "gateway/connect", {"device": "a"}, "not_a_gateway"),
    (GW, "gateway/connect", b"{not json", "invalid_json"),
    (GW, "gateway/connect", {"name": "a"}, "bad_sub_device"),
    (GW, "gateway/connect", {"device": "x" * 70}, "bad_sub_device"),
    (GW, "gateway/telemetry", [1, 2], "wrong_type"),
    (GW, "gateway/commands/ack", {"device": "a", "status": "succeeded"}, "invalid_ack"),
    ({**GW, "gw1.a": {"status": "active", "attributes": {}}}, "gateway/connect", {"device": "a"},
     "not_this_gateways_device"),
])
def test_refusals_are_dead_lettered_with_a_reason(registry, channel, payload, code):
    got = _run(registry, channel, payload)
    assert ("dlq", "gw1", code) in got and not any(k == "telemetry" for k, _, _ in got)


def test_a_registered_sub_device_with_this_parent_is_accepted():
    reg = {**GW, "gw1.a": {"status": "active", "attributes": {"parent": "gw1"}}}
    assert ("event", "gw1.a", "ONLINE") in _run(reg, "gateway/connect", {"device": "a"})
