"""Devices on MQTT as the platform sees them: an MQTT 3.1.1 device is bridged like an MQTT 5 one; a
device's online status and its Last Will become device events; and killing a connector with QoS1
messages in flight loses none of them once another instance takes over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid

import paho.mqtt.client as mqtt

from schemas import topics
from schemas.namespace import device_topics
from tests.connectors.mqtt.support import ingested, start_connector, stop_all, subscriptions
from tests.connectors.support import records
from tests.utils.factories import publish_json, wait_for


def test_an_mqtt_311_device_is_bridged_like_an_mqtt5_one(stack, factory, settings):
    t = factory.tenant("v311")
    dev = factory.device(t)
    client = factory.mqtt_client(dev, protocol=mqtt.MQTTv311)
    ts = int(time.time() * 1000)
    info = publish_json(client, device_topics(t.tenant_id, dev.device_id)["telemetry"],
                        {"ts": ts, "values": {"rpm": 1200, "running": True}})
    assert info.is_published()
    rec = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                  lambda r: r["device_id"] == dev.device_id and r["tenant_id"] == t.tenant_id)[0]
    assert rec["values"] == {"rpm": 1200.0, "running": True} and rec["event_time"] == ts
    assert rec["protocol"] == "mqtt"
    client.disconnect()


def test_online_status_and_last_will_become_device_events(stack, factory, settings):
    t = factory.tenant("lwt")
    dev = factory.device(t)
    status_topic = device_topics(t.tenant_id, dev.device_id)["status"]
    client = factory.mqtt_client(dev, connect=False)
    client.will_set(status_topic, json.dumps({"state": "offline", "why": "lost"}), qos=1, retain=True)
    client.connect(settings.mqtt_broker_host, settings.mqtt_tls_port, keepalive=5)
    client.loop_start()
    wait_for(client.is_connected, what="device connected")
    publish_json(client, status_topic, b"online")
    wait_for(lambda: records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                             lambda r: r["device_id"] == dev.device_id and r["event_type"] == "ONLINE",
                             timeout=5), timeout=45, what="ONLINE event")
    client.loop_stop()
    client.socket().close()  # the device dies without DISCONNECT: the broker publishes its Last Will
    ev = records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                 lambda r: r["device_id"] == dev.device_id and r["event_type"] == "OFFLINE", timeout=60)[0]
    assert ev["tenant_id"] == t.tenant_id and ev["details"]["why"] == "lost" and ev["source"] == "mqtt"


def test_killing_a_connector_with_messages_in_flight_loses_none(stack, factory, settings, tmp_path):
    """Instance A cannot reach Kafka, so it acknowledges nothing; it is killed (-9) with every message in
    flight. A peer with another client id in the same share group starts, then A's replacement with A's
    client id (a restarted pod of a StatefulSet). Every message reaches Kafka exactly from those two."""
    group = f"kill-{uuid.uuid4().hex[:8]}"
    a_id, b_id = f"{group}-a", f"{group}-b"
    t = factory.tenant("kill")
    dev = factory.device(t)
    procs: list[subprocess.Popen] = []
    try:
        a_metrics = _free_port(settings.host)
        a = start_connector(settings, tmp_path, a_id, group, kafka="127.0.0.1:1",  # Kafka unreachable for A
                            metrics_port=a_metrics)
        procs.append(a)
        wait_for(lambda: subscriptions(tmp_path, a_id), timeout=60, what="instance A subscribed")
        client = factory.mqtt_client(dev)
        topic = device_topics(t.tenant_id, dev.device_id)["telemetry"]
        n = 300
        infos = [client.publish(topic, json.dumps({"values": {"seq": i}}), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
        assert all(i.is_published() for i in infos), "the broker did not take every message"
        # the broker pushed every one to A (in flight: A took them from the socket, never acknowledged them)
        wait_for(lambda: ingested(settings.host, a_metrics, t.tenant_id) >= n, timeout=60,
                 what="instance A to receive every message")
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)

        b = start_connector(settings, tmp_path, b_id, group)
        procs.append(b)
        wait_for(lambda: subscriptions(tmp_path, b_id), timeout=60, what="instance B subscribed")
        a2 = start_connector(settings, tmp_path, a_id, group)  # A's replacement: same client id, with Kafka
        procs.append(a2)

        def mine(r):
            return r["tenant_id"] == t.tenant_id and r["device_id"] == dev.device_id

        def split(got) -> dict[str, set[int]]:
            by: dict[str, set[int]] = {}
            for rec, headers in got:
                by.setdefault(headers.get("fs-instance", b"").decode(), set()).add(int(rec["values"]["seq"]))
            return by

        def complete(got) -> bool:
            by = split(got)
            return len(by.get(a_id, set()) | by.get(b_id, set())) == n

        by_instance = split(records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name, mine, timeout=90,
                                    headers=True, until=complete))
        ours = by_instance.get(a_id, set()) | by_instance.get(b_id, set())
        print(f"in-flight messages written after the kill: by A's replacement {len(by_instance.get(a_id, ()))}, "
              f"by the other member {len(by_instance.get(b_id, ()))}")
        assert ours == set(range(n)), f"lost {sorted(set(range(n)) - ours)[:20]}"
        client.disconnect()
    finally:
        stop_all(procs)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
