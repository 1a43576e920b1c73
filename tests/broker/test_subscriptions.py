"""Finding 3 of issue 19: a device's subscription outside its own namespace is refused with a reason code
(SUBACK 0x87 under MQTT 5, 0x80 under 3.1.1), not granted and then silently filtered; the platform's own
subscriptions keep working (adr/0100)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

FOREIGN = ["#", "+/#", "$SYS/#", "$SYS/broker/clients/connected", "$CONTROL/#", "$CONTROL/dynamic-security/v1",
           "$CONTROL/fleetstream-access/v1/response", "fs/#", "fs/+/+/telemetry", "{tenant}/#", "fs/{tenant}/#",
           "fs/{tenant}/+/commands", "fs/{tenant}/{other}/#", "fs/{tenant}/{device}x/#", "$share/g/fs/{tenant}/{device}/#"]
OWN = ["fs/{tenant}/{device}/#", "fs/{tenant}/{device}/commands", "fs/{tenant}/{device}/shadow/+",
       "fs/{tenant}/{device}"]


@pytest.mark.parametrize(("protocol", "refused"), [(mqtt.MQTTv5, 0x87), (mqtt.MQTTv311, 0x80)])
def test_a_device_may_subscribe_only_inside_its_own_namespace(broker, sessions, protocol, refused):
    me, neighbour = broker.device(), None
    tenant, device = me.cn.split(".", 1)
    neighbour = broker.device(tenant)
    s = sessions(me, protocol=protocol)
    assert s.connect() == 0
    names = {"tenant": tenant, "device": device, "other": neighbour.cn.split(".", 1)[1]}
    for pattern in FOREIGN:
        topic = pattern.format(**names)
        assert s.subscribe(topic) == [refused], topic
    for pattern in OWN:
        topic = pattern.format(**names)
        assert s.subscribe(topic) == [1], topic
    # one SUBSCRIBE with both: each filter gets its own verdict
    _rc, mid = s.client.subscribe([("#", 1), (f"fs/{tenant}/{device}/commands", 1)])
    assert s.wait(lambda: s.subacks.get(mid), what="SUBACK") == [refused, 1]
    assert s.connected and not s.disconnects  # a refused subscription costs the device nothing else


def test_the_connectors_subscriptions_are_granted(broker, sessions):
    connector = sessions(broker.platform("fleetstream-connector"), "fleetstream-connector-0")
    assert connector.connect() == 0
    for topic in ("$share/fleetstream/fs/+/+/telemetry", "$share/fleetstream/fs/+/+/status",
                  "$share/fleetstream/fs/+/+/commands/ack", "$share/fleetstream/fs/+/+/shadow/reported"):
        assert connector.subscribe(topic) == [1], topic
    # and it receives what devices publish, but never gets the access plugin's control topic
    assert connector.subscribe("$CONTROL/fleetstream-access/v1/response") == [0x87]
    dev = broker.device()
    d = sessions(dev)
    assert d.connect() == 0
    assert d.publish(f"fs/{dev.cn.replace('.', '/', 1)}/telemetry", b'{"values": {"t": 1}}') == 0
    connector.wait(lambda: any(m.topic.endswith("/telemetry") for m in connector.messages), what="the reading")
