"""Gateway devices on the stack's MQTT connector (adr/0157): a gateway's one connection carries its
sub-devices' connect/disconnect, telemetry and commands; sub-devices are taken on first sight within the
gateway's limit; and a gateway speaks only for its own sub-devices, never for another gateway's or for an
ordinary device of the tenant."""

from __future__ import annotations

import json
import threading
import time

from schemas import topics
from schemas.namespace import device_root
from tests.connectors.support import publish_command, records
from tests.utils.factories import publish_json, wait_for


def _dead(settings, tenant_id: str, code: str):
    return records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                   lambda r: r["tenant_id"] == tenant_id and r["reason_code"] == code, timeout=60)


def _readings(settings, tenant_id: str, device_id: str, timeout: float = 60):
    return records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                   lambda r: r["tenant_id"] == tenant_id and r["device_id"] == device_id, timeout=timeout)


def test_a_gateway_carries_its_sub_devices_and_only_them(stack, factory, settings):
    t = factory.tenant("gw")
    tid = t.tenant_id
    gw1 = factory.device(t, "gw1", attributes={"gateway": "true", "gateway_max_devices": "2"})
    factory.device(t, "gw2", attributes={"gateway": "true"})
    factory.device(t, "plain")
    factory.device(t, "gw1.x")  # an ordinary device whose id looks like one of gw1's sub-devices
    not_gw = factory.device(t, "gw3")
    root = device_root(tid, "gw1")
    commands: list[dict] = []
    subscribed = threading.Event()
    c = factory.mqtt_client(gw1)
    codes: dict[int, int] = {}
    c.on_publish = lambda _c, _u, mid, rc, _p: codes.__setitem__(mid, int(rc.value))
    c.on_subscribe = lambda *_: subscribed.set()
    c.on_message = lambda _c, _u, m: commands.append(json.loads(m.payload))
    c.subscribe(f"{root}/gateway/commands", qos=1)
    assert subscribed.wait(10)
    try:
        # connect: the connector may not know gw1's gateway flag yet (registry lag), so repeat until it does
        def connected():
            publish_json(c, f"{root}/gateway/connect", {"device": "sensor-a"})
            return records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                           lambda r: r["tenant_id"] == tid and r["device_id"] == "gw1.sensor-a"
                           and r["event_type"] == "ONLINE", timeout=3)
        ev, = wait_for(connected, timeout=90, interval=1, what="ONLINE of gw1.sensor-a")[:1]
        assert ev["details"]["gateway"] == "gw1"
        ts = int(time.time() * 1000)
        publish_json(c, f"{root}/gateway/telemetry", {"sensor-a": [{"ts": ts, "values": {"t": 1.5}}],
                                                       "sensor-b": {"ts": ts, "values": {"t": 2.5}}})
        assert _readings(settings, tid, "gw1.sensor-a")[0]["values"] == {"t": 1.5}
        assert _readings(settings, tid, "gw1.sensor-b")[0]["values"] == {"t": 2.5}

        # the limit (2): a third sub-device is refused; an ordinary device's id is not gw1's to use
        publish_json(c, f"{root}/gateway/telemetry", {"sensor-c": {"values": {"t": 3}}, "x": {"values": {"t": 4}}})
        assert _dead(settings, tid, "gateway_device_limit")[0]["device_id"] == "gw1"
        assert _dead(settings, tid, "not_this_gateways_device")[0]["device_id"] == "gw1"

        # gw1 cannot publish for gw2's sub-device nor for an ordinary device: the broker refuses the topics…
        for topic in (f"{device_root(tid, 'gw2')}/gateway/telemetry", f"{device_root(tid, 'plain')}/telemetry"):
            info = c.publish(topic, json.dumps({"sensor-a": {"values": {"t": 666}}, "values": {"t": 666}}), qos=1)
            wait_for(lambda i=info: i.mid in codes, timeout=30, what="PUBACK")
            assert codes[info.mid] == 0x87, topic
        # …and a name in its own payload always means its own sub-device, never gw2's or "plain"
        publish_json(c, f"{root}/gateway/telemetry", {"plain": {"values": {"t": 777}}})
        assert _dead(settings, tid, "gateway_device_limit")  # (gw1.plain would be its third)
        assert not _readings(settings, tid, "plain", timeout=3)
        assert not _readings(settings, tid, "gw2.sensor-a", timeout=3)

        # commands to a sub-device go down the gateway's connection, named; its answer comes back up
        cid = publish_command(settings.bootstrap_servers, tid, "gw1.sensor-a", json.dumps({"on": True}),
                              protocol="mqtt", name="switch")
        wait_for(lambda: any(m["command_id"] == cid for m in commands), timeout=60, what="the command at gw1")
        cmd = next(m for m in commands if m["command_id"] == cid)
        assert cmd["device"] == "sensor-a" and cmd["params"] == {"on": True}
        publish_json(c, f"{root}/gateway/commands/ack", {"device": "sensor-a", "command_id": cid,
                                                          "status": "succeeded"})
        acks = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name,
                       lambda a: a["command_id"] == cid and a["status"] == "SUCCEEDED", timeout=60)
        assert acks and acks[0]["device_id"] == "gw1.sensor-a"

        publish_json(c, f"{root}/gateway/disconnect", {"device": "sensor-a"})
        assert records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                       lambda r: r["device_id"] == "gw1.sensor-a" and r["tenant_id"] == tid
                       and r["event_type"] == "OFFLINE", timeout=60)
    finally:
        c.disconnect()
        c.loop_stop()

    # a device without the gateway flag speaks for nobody
    c3 = factory.mqtt_client(not_gw)
    try:
        publish_json(c3, f"{device_root(tid, 'gw3')}/gateway/telemetry", {"s": {"values": {"t": 1}}})
        assert _dead(settings, tid, "not_a_gateway")[0]["device_id"] == "gw3"
        assert not _readings(settings, tid, "gw3.s", timeout=3)
    finally:
        c3.disconnect()
        c3.loop_stop()
