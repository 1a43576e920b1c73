"""Sparkplug B on the shared broker (adr/0156): an edge node is the device its certificate names, its group
is its tenant. It publishes births, deaths and data only as itself, receives only its own NCMD/DCMD, reads
the hosts' STATE and writes none; the connector (a platform identity) reads every group and sends commands."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest


@pytest.mark.parametrize(("protocol", "refused_sub"), [(mqtt.MQTTv5, 0x87), (mqtt.MQTTv311, 0x80)])
def test_an_edge_node_speaks_only_as_itself_in_its_tenants_group(broker, sessions, protocol, refused_sub):
    me = broker.device()
    tenant, edge = me.cn.split(".", 1)
    other_tenant = broker.device()
    neighbour = broker.device(tenant)
    ot, oe = other_tenant.cn.split(".", 1)
    ne = neighbour.cn.split(".", 1)[1]
    host = sessions(broker.platform("fleetstream-connector"), f"sparkplug-host-test-{protocol}")
    assert host.connect() == 0 and host.subscribe("spBv1.0/#") == [1]
    s = sessions(me, protocol=protocol)
    assert s.connect() == 0
    own = [f"spBv1.0/{tenant}/NBIRTH/{edge}", f"spBv1.0/{tenant}/NDATA/{edge}", f"spBv1.0/{tenant}/NDEATH/{edge}",
           f"spBv1.0/{tenant}/DBIRTH/{edge}/pump1", f"spBv1.0/{tenant}/DDATA/{edge}/pump1",
           f"spBv1.0/{tenant}/DDEATH/{edge}/pump.1"]
    foreign = [f"spBv1.0/{ot}/NDATA/{oe}", f"spBv1.0/{ot}/NDATA/{edge}", f"spBv1.0/{tenant}/NDATA/{ne}",
               f"spBv1.0/{tenant}/DDATA/{ne}/pump1", f"spBv1.0/{tenant}/NDATA/{edge}x",
               f"spBv1.0/{tenant}/NCMD/{edge}", f"spBv1.0/{tenant}/DCMD/{edge}/pump1",  # commands are the host's
               f"spBv1.0/{tenant}/NDATA/{edge}/extra", f"spBv1.0/{tenant}/DDATA/{edge}",
               f"spBv1.0/{tenant}/DDATA/{edge}/a/b", "spBv1.0/STATE/fleetstream", f"spBv1.0/{tenant}/STATE/{edge}"]
    if protocol == mqtt.MQTTv5:  # only MQTT 5 reports a refused publish to the sender
        for topic in foreign:
            assert s.publish(topic, b"x") == 0x87, topic
    else:
        for topic in foreign:
            s.publish(topic, b"x")
    for topic in own:
        assert s.publish(topic, b"x") == 0, topic
    host.wait(lambda: len(host.messages) >= len(own), what="the edge node's own messages at the host")
    assert sorted(m.topic for m in host.messages) == sorted(own)  # and not one of the foreign ones
    for topic in (f"spBv1.0/{tenant}/NCMD/{edge}", f"spBv1.0/{tenant}/DCMD/{edge}/+",
                  f"spBv1.0/{tenant}/DCMD/{edge}/pump1", "spBv1.0/STATE/fleetstream", "spBv1.0/STATE/+"):
        assert s.subscribe(topic) == [1], topic
    for topic in ("spBv1.0/#", f"spBv1.0/{tenant}/#", f"spBv1.0/{tenant}/+/{edge}", f"spBv1.0/{tenant}/NDATA/{edge}",
                  f"spBv1.0/{tenant}/NCMD/{ne}", f"spBv1.0/{ot}/NCMD/{edge}", f"spBv1.0/{tenant}/NCMD/+"):
        assert s.subscribe(topic) == [refused_sub], topic
    # what the host sends reaches the edge node; a neighbour's command does not
    host.publish(f"spBv1.0/{tenant}/NCMD/{ne}", b"not yours")
    host.publish(f"spBv1.0/{tenant}/DCMD/{edge}/pump1", b"yours")
    s.wait(lambda: any(m.payload == b"yours" for m in s.messages), what="the DCMD")
    assert not any(m.payload == b"not yours" for m in s.messages)
    assert s.connected and not s.disconnects


def test_a_denied_edge_node_loses_its_sparkplug_topics_too(broker, sessions):
    me = broker.device()
    tenant, edge = me.cn.split(".", 1)
    s = sessions(me)
    assert s.connect() == 0
    assert s.publish(f"spBv1.0/{tenant}/NDATA/{edge}", b"x") < 0x80  # 0x10: accepted, nobody subscribed
    broker.access.suspend_device(tenant, edge)
    try:
        s.wait(lambda: s.disconnects, what="the denied session closed")
        again = sessions(me, client_id=me.cn)
        assert again.connect() != 0
    finally:
        broker.access.resume_device(tenant, edge)
