"""The stack's MQTT connector is a Sparkplug B 3.0 primary host (adr/0155), tested against an edge node
driven by pysparkplug (a third-party implementation) over the real broker with the edge node's device
certificate: STATE, births, data by alias, a seq gap answered by a rebirth request, devices as
``<edge>.<device>``, commands out as NCMD/DCMD through the command router, and deaths."""

from __future__ import annotations

import json
import threading

import pysparkplug as sp
import pytest

from schemas import topics
from tests.connectors.support import publish_command, records
from tests.utils.factories import wait_for

DT = sp.DataType


pytestmark = pytest.mark.usefixtures("paho2_shim")  # pysparkplug on paho 2 (conftest)


class EdgeNode:
    """A pysparkplug edge node and device with the fleetstream device certificate of the edge node; keeps
    every command it receives."""

    def __init__(self, settings, tenant_id: str, dev):
        self.commands: list[tuple[str, dict]] = []
        self.lock = threading.Event()
        d = dev.cert_dir
        self.client = sp.Client(client_id=f"{tenant_id}.{dev.device_id}",
                                transport_config=sp.TLSConfig(ca_certs=str(d / "ca.crt"), certfile=str(d / "device.crt"),
                                                              keyfile=str(d / "device.key")))
        now = sp.get_current_timestamp()
        self.node = sp.EdgeNode(tenant_id, dev.device_id, [
            sp.Metric(timestamp=now, name="temperature", datatype=DT.DOUBLE, value=21.5, alias=1),
            sp.Metric(timestamp=now, name="Node Control/Rebirth", datatype=DT.BOOLEAN, value=False),
            sp.Metric(timestamp=now, name="setpoint", datatype=DT.INT16, value=10, alias=2)],
            client=self.client, cmd_callback=lambda _n, m: self._got("node", m))
        self.node.register(sp.Device("pump1", [sp.Metric(timestamp=now, name="speed", datatype=DT.UINT16,
                                                         value=1200, alias=10)],
                                     cmd_callback=lambda _d, m: self._got("pump1", m)))
        self.settings = settings

    def _got(self, who: str, message) -> None:
        self.commands.append((who, {m.name: m.value for m in message.payload.metrics}))

    def connect(self) -> None:
        self.node.connect(self.settings.mqtt_broker_host, port=self.settings.mqtt_tls_port)


def _events(settings, tenant_id: str, device_id: str, event_type: str, count: int = 1):
    found = records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                   lambda r: r["tenant_id"] == tenant_id and r["device_id"] == device_id
                   and r["event_type"] == event_type, count=count, timeout=90)
    assert len(found) >= count, f"{event_type} of {device_id}"
    return found


def _readings(settings, tenant_id: str, device_id: str, until):
    found = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                   lambda r: r["tenant_id"] == tenant_id and r["device_id"] == device_id, count=10_000,
                   timeout=90, until=until)
    assert until(found), f"readings of {device_id}: {[r['values'] for r in found]}"
    return found


def test_the_primary_host_state_is_retained_json(stack, factory, settings):
    t = factory.tenant("spstate")
    dev = factory.device(t)
    got = []
    c = factory.mqtt_client(dev)  # an edge node may read the hosts' STATE
    c.on_message = lambda _c, _u, m: got.append((m.topic, json.loads(m.payload), m.retain))
    c.subscribe("spBv1.0/STATE/+", qos=1)
    try:
        wait_for(lambda: got, timeout=30, what="the retained STATE")
        topic, doc, retained = got[0]
        assert topic == "spBv1.0/STATE/fleetstream" and retained
        assert doc["online"] is True and isinstance(doc["timestamp"], int) and doc["timestamp"] > 1.7e12
    finally:
        c.disconnect()
        c.loop_stop()


def test_an_edge_node_and_its_device_end_to_end(stack, factory, settings):
    t = factory.tenant("spb")
    tid = t.tenant_id
    dev = factory.device(t, "edge1")
    edge = EdgeNode(settings, tid, dev)
    edge.connect()
    try:
        # NBIRTH and DBIRTH: both online, their metrics stored (bdSeq and Node Control are not telemetry)
        _events(settings, tid, "edge1", "ONLINE")
        _events(settings, tid, "edge1.pump1", "ONLINE")
        node_rec = _readings(settings, tid, "edge1", lambda f: f)[0]
        assert node_rec["values"] == {"temperature": 21.5, "setpoint": 10.0} and node_rec["protocol"] == "mqtt"
        assert _readings(settings, tid, "edge1.pump1", lambda f: f)[0]["values"] == {"speed": 1200.0}

        # NDATA / DDATA from the library's own update calls
        now = sp.get_current_timestamp()
        edge.node.update([sp.Metric(timestamp=now, name="temperature", datatype=DT.DOUBLE, value=22.75)])
        edge.node.update_device("pump1", [sp.Metric(timestamp=now, name="speed", datatype=DT.UINT16, value=900)])
        _readings(settings, tid, "edge1", lambda f: any(r["values"] == {"temperature": 22.75} for r in f))
        _readings(settings, tid, "edge1.pump1", lambda f: any(r["values"] == {"speed": 900.0} for r in f))

        # a command through the router: a DCMD at the library's device callback, with the birth's datatype
        publish_command(settings.bootstrap_servers, tid, "edge1.pump1", json.dumps({"speed": 1500}), protocol="mqtt")
        wait_for(lambda: ("pump1", {"speed": 1500}) in edge.commands, timeout=60, what="the DCMD")
        # a value the metric cannot hold is refused, not rounded: FAILED, nothing sent
        cid = publish_command(settings.bootstrap_servers, tid, "edge1", json.dumps({"setpoint": 12.7}), protocol="mqtt")
        ack, = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name, lambda a: a["command_id"] == cid,
                       timeout=60)
        assert ack["status"] == "FAILED" and "Int16" in ack["reason"]

        # a seq gap (seq 200 with an alias only, from the library's low-level client): stored, and a rebirth asked
        edge.client.publish(sp.Message(
            topic=sp.Topic(message_type=sp.MessageType.NDATA, group_id=tid, edge_node_id="edge1"),
            payload=sp.NData(timestamp=sp.get_current_timestamp(), seq=200, metrics=(
                sp.Metric(timestamp=sp.get_current_timestamp(), name=None, alias=1, datatype=DT.DOUBLE, value=99.5),)),
            qos=sp.QoS.AT_MOST_ONCE, retain=False))
        wait_for(lambda: ("node", {"Node Control/Rebirth": True}) in edge.commands, timeout=60,
                 what="the rebirth request")
        _readings(settings, tid, "edge1", lambda f: any(r["values"] == {"temperature": 99.5} for r in f))
    finally:
        # the edge node dies without DISCONNECT: the broker publishes its Will, the NDEATH with this session's
        # bdSeq. (pysparkplug's graceful disconnect() sends the *next* session's bdSeq, against §7.1's rule, so
        # a host that checks bdSeq dead-letters it as sparkplug_stale_death: see test_sparkplug_host.py.)
        paho = edge.client._client
        paho.loop_stop()
        paho.socket().close()
    _events(settings, tid, "edge1", "OFFLINE")
    _events(settings, tid, "edge1.pump1", "OFFLINE")


def test_an_edge_node_cannot_speak_for_another_tenant_or_node(stack, factory, settings):
    """The broker refuses it (PUBACK 0x87), so the host never sees it: nothing is stored for the victim."""
    a, b = factory.tenant("spa"), factory.tenant("spv")
    attacker = factory.device(a, "edge1")
    factory.device(b, "edge1")
    c = factory.mqtt_client(attacker)
    codes = []
    c.on_publish = lambda _c, _u, _mid, rc, _p: codes.append(int(rc.value))
    raw = sp.NBirth(timestamp=sp.get_current_timestamp(), seq=0, metrics=(
        sp.Metric(timestamp=sp.get_current_timestamp(), name="bdSeq", datatype=DT.INT64, value=0),
        sp.Metric(timestamp=sp.get_current_timestamp(), name="temperature", datatype=DT.DOUBLE, value=-40.0))).encode()
    try:
        for topic in (f"spBv1.0/{b.tenant_id}/NBIRTH/edge1", f"spBv1.0/{a.tenant_id}/NBIRTH/edge2"):
            c.publish(topic, raw, qos=1)
        wait_for(lambda: len(codes) == 2, timeout=30, what="two PUBACKs")
        assert codes == [0x87, 0x87]
        c.publish(f"spBv1.0/{a.tenant_id}/NBIRTH/edge1", raw, qos=1)  # its own: stored
        _readings(settings, a.tenant_id, "edge1", lambda f: f)
        assert not records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                           lambda r: r["tenant_id"] == b.tenant_id or r["device_id"] == "edge2", timeout=5)
    finally:
        c.disconnect()
        c.loop_stop()

