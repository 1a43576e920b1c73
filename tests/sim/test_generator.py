"""The load generator is a fleet of real MQTT 5 clients over mTLS: every device connects with its own
certificate, its QoS1 publishes are acknowledged by the broker, and what it sent is what reaches Kafka."""

from __future__ import annotations

import json

import pytest

from fleetstream.sim import Generator, provision
from fleetstream.sim.mqtt_worker import _receive_maximum
from schemas import topics
from tests.connectors.support import records


def test_receive_maximum_is_read_from_connack_properties():
    # flags, reason, properties: receive maximum 20, a reason string, topic alias maximum 10
    props = b"\x1f\x00\x02ok" + b"\x21\x00\x14" + b"\x22\x00\x0a"
    assert _receive_maximum(b"\x00\x00" + bytes((len(props),)) + props) == 20
    assert _receive_maximum(b"\x00\x00\x00") is None


@pytest.mark.integration
def test_a_small_fleet_publishes_and_every_message_is_acknowledged_and_lands(stack, settings, tmp_path):
    fleet, _ = provision(settings, 3, out_dir=tmp_path / "fleet", prefix="gen")
    gen = Generator(fleet, settings.mqtt_broker_host, settings.mqtt_tls_port, workers=2, max_rate=300)
    try:
        assert gen.start(timeout=120) == 3
        gen.set_rate(300)
        deadline = 0
        while gen.stats.sent < 300 and deadline < 60:
            gen.poll(0.5)
            deadline += 1
    finally:
        per_device = gen.stop()
    st = gen.stats
    assert st.sent >= 300 and st.acked == st.sent and st.refused == 0 and st.disconnects == 0, st
    assert set(per_device) == {d.device_id for d in fleet.devices}
    assert sum(v[0] for v in per_device.values()) == st.sent

    def mine(r):
        return r["tenant_id"] == fleet.tenant_id

    got = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name, mine, count=st.sent, timeout=90)
    assert len(got) == st.sent  # each message exactly once
    assert len({(r["device_id"], r["event_time"]) for r in got}) == st.sent  # one timestamp per message per device
    assert all(set(r["values"]) == {"voltage", "power_w", "energy_kwh"} for r in got)
    json.dumps(per_device)  # the audit writes it as JSON
