"""Two of every role at once (issue 15, adr/0134): one stack for the module with two streams workers, two
MQTT connectors sharing one subscription and two gateways, watched by the supervisor as `fleetstream up
--replicas streams=2,mqtt=2,gateway=2` does. A tenant sees one platform: partitions split between the
workers, both connectors carry readings, a shadow written through gateway A is read through gateway B, a
WebSocket client on B receives what devices publish, a command sent through A ends acknowledged as B reports
it, each alert fires once, and each gateway's store holds each point exactly once."""

from __future__ import annotations

import collections
import json
import time
import uuid

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from websockets.sync.client import connect

from fleetstream.stack.supervisor import MQTT_ROLES, replica_port
from runtime.settings import Settings
from schemas import topics
from schemas.namespace import device_topics
from streams.app import web_auth_headers
from tests.conftest import PORT_OFFSET
from tests.gateway.test_commands import CommandDevice
from tests.streams.rulekit import RuleKit, now_ms
from tests.utils.factories import Factory, publish_json, wait_for
from tests.utils.kafka import records_to_end
from tests.utils.stacks import watched_stack as watched

# below 32768 with any offset; replica i adds i * 100 (gateway 13180 and 13280, streams web 13190 and 13290)
PORTS = {k: v + PORT_OFFSET for k, v in dict(
    kafka_port=13192, kafka_controller_port=13193, mqtt_tls_port=13183, postgres_port=13132,
    gateway_port=13180, schema_registry_port=13181, streams_web_port=13190, coap_port=13184).items()}
REPLICAS = {"streams": 2, "connector-mqtt": 2, "gateway": 2}

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    s = Settings(data_dir=tmp_path_factory.mktemp("replicas") / "data", **PORTS, sink_batch_ms=100)
    with watched(s, REPLICAS, MQTT_ROLES) as stack:  # no test here reaches CoAP
        yield stack


@pytest.fixture(scope="module")
def factory(replicated):
    f = Factory(replicated.s)
    yield f
    f.close()


@pytest.fixture(scope="module")
def gateways(replicated):
    a, b = (httpx.Client(base_url=url, timeout=30) for url in replicated.gateway_urls())
    yield a, b
    a.close()
    b.close()


def _h(tenant, gw) -> dict:
    return {"Authorization": f"Bearer {tenant.token(gw)}"}


def _group_members(s: Settings, group: str) -> dict[str, set[tuple[str, int]]]:
    admin = AdminClient({"bootstrap.servers": s.bootstrap_servers})
    desc = admin.describe_consumer_groups([group])[group].result(30)
    return {m.member_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} for m in desc.members}


def test_every_role_runs_twice_with_its_own_ports(replicated):
    names = {c.name for c in replicated.children if c.alive()}
    assert {"gateway", "gateway.1", "streams", "streams.1", "connector-mqtt", "connector-mqtt.1"} <= names
    s = replicated.s
    for i in range(2):
        r = httpx.get(f"http://{s.host}:{replica_port(s.gateway_port, i)}/readyz", timeout=30)
        assert r.status_code == 200, r.text
        r = httpx.get(f"http://{s.host}:{replica_port(s.streams_web_port, i)}/rules/nobody/",
                      headers=web_auth_headers(s), timeout=30)
        assert r.status_code == 200


def test_the_stream_workers_split_the_partitions(replicated):
    """The validate loop's group and the Faust agents' group each have two members, and each source partition
    is worked by exactly one of them (Faust's standbys of changelog partitions are not counted)."""
    s = replicated.s
    admin = AdminClient({"bootstrap.servers": s.bootstrap_servers})
    for group, topic in (("fleetstream-streams-validate", topics.TELEMETRY_RAW.name),
                         ("fleetstream-streams", "fleetstream-streams-telemetry-bundles")):
        partitions = set(admin.list_topics(topic, timeout=30).topics[topic].partitions)
        assert partitions, topic

        def split(group=group, topic=topic):
            members = _group_members(s, group)
            mine = [{p for t, p in tps if t == topic} for tps in members.values()]
            return mine if len(members) == 2 and all(mine) else None

        a, b = wait_for(split, timeout=240, interval=2, what=f"two members of {group} sharing {topic}")
        assert not a & b, f"{group}: a partition of {topic} assigned twice"
        assert a | b == partitions, f"{group}: {topic} partitions unassigned"


def test_readings_reach_both_stores_once_and_a_websocket_on_gateway_b(replicated, factory, gateways):
    """Many devices publish over MQTT: both connectors carry some of the load (the ``fs-instance`` header on
    the raw records), a WebSocket client on B receives readings, and each gateway's store holds every
    point exactly once (each replica's sink writes each point once into its own chdb store)."""
    s = replicated.s
    gw_a, gw_b = gateways
    tenant = factory.tenant("replicas")
    devices = [factory.device(tenant) for _ in range(8)]
    token = tenant.token(gw_b)
    received: list[dict] = []
    url = f"ws://{s.host}:{replica_port(s.gateway_port, 1)}/v1/stream?access_token={token}"
    start_ms = now_ms() - 60_000
    per_device = 25
    with connect(url, open_timeout=30) as ws:
        assert json.loads(ws.recv(30))["type"] == "ready"
        ws.send(json.dumps({"type": "subscribe", "id": "all"}))
        assert json.loads(ws.recv(30)) == {"type": "subscribed", "id": "all"}
        for d in devices:
            client = factory.mqtt_client(d)
            try:
                topic = device_topics(d.tenant_id, d.device_id)["telemetry"]
                for k in range(per_device):
                    info = publish_json(client, topic, {"ts": start_ms + k * 1000, "values": {"temperature": float(k)}})
                    assert info.rc == 0 and info.is_published()
            finally:
                client.disconnect()
                client.loop_stop()
        deadline = time.monotonic() + 180
        while len(received) < len(devices) * per_device and time.monotonic() < deadline:
            try:
                msg = json.loads(ws.recv(5))
            except TimeoutError:
                continue
            if msg.get("type") == "telemetry":
                received.append(msg)
    assert received, "the WebSocket client on gateway B received no reading"
    assert {m["device_id"] for m in received} <= {d.device_id for d in devices}

    by_instance = _instances_on_raw(s, tenant.tenant_id, len(devices) * per_device)
    assert sum(by_instance.values()) == len(devices) * per_device, by_instance
    assert set(by_instance) == {"fleetstream-connector-shared-0", "fleetstream-connector-shared-1"}, by_instance

    from_ = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start_ms / 1000 - 1)) + "Z"
    for name, gw in (("A", gw_a), ("B", gw_b)):
        h = _h(tenant, gw)
        for d in devices:
            def stored(d=d, gw=gw, h=h):
                r = gw.get(f"/v1/devices/{d.device_id}/telemetry", headers=h,
                           params={"metric": "temperature", "from": from_})
                pts = r.json()["points"] if r.status_code == 200 else []
                return pts if len(pts) >= per_device else None

            pts = wait_for(stored, timeout=240, interval=1, what=f"gateway {name} to store {d.device_id}'s points")
            assert sorted(p["value"] for p in pts) == [float(k) for k in range(per_device)], (name, pts)


def _instances_on_raw(s: Settings, tenant_id: str, want: int) -> collections.Counter:
    """Raw records of the tenant, counted by the connector instance that wrote them."""
    c = Consumer({"bootstrap.servers": s.bootstrap_servers, "group.id": f"test-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    seen: collections.Counter = collections.Counter()
    read_to: dict[int, int] = {}  # partition → next offset to read

    def read(timeout: float) -> None:
        for m in c.consume(500, timeout):
            if m.error():
                continue
            read_to[m.partition()] = m.offset() + 1
            if m.value() is not None and tenant_id.encode() in m.value()[:64]:
                seen[dict(m.headers() or []).get("fs-instance", b"?").decode()] += 1

    try:
        raw = topics.TELEMETRY_RAW.name
        md = c.list_topics(raw, timeout=10).topics[raw]
        c.assign([TopicPartition(raw, p, 0) for p in md.partitions])
        deadline = time.monotonic() + 120
        while sum(seen.values()) < want and time.monotonic() < deadline:
            read(1.0)
        # then to the topic's end as it is now: a duplicate would show as more than ``want``
        ends = {p: c.get_watermark_offsets(TopicPartition(raw, p), timeout=10)[1] for p in md.partitions}
        while any(read_to.get(p, 0) < end for p, end in ends.items()) and time.monotonic() < deadline:
            read(1.0)
    finally:
        c.close()
    return seen


def test_a_shadow_patched_through_a_is_read_through_b(factory, gateways):
    gw_a, gw_b = gateways
    tenant = factory.tenant("shadowab")
    dev = factory.device(tenant)
    r = gw_a.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers=_h(tenant, gw_a),
                   json={"setpoint": 19.5})
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    hb = _h(tenant, gw_b)

    def on_b():
        r = gw_b.get(f"/v1/devices/{dev.device_id}/shadow", headers=hb)
        return r.json() if r.status_code == 200 and r.json().get("version") == version else None

    doc = wait_for(on_b, timeout=120, interval=0.5, what="gateway B to serve the shadow written through A")
    assert doc["desired"] == {"setpoint": 19.5}
    # and the other way round, guarded by If-Match with the version B just served
    r = gw_b.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers={**hb, "If-Match": f'"{version}"'},
                   json={"setpoint": 20.0})
    assert r.status_code == 200 and r.json()["version"] == version + 1, r.text


def test_a_command_sent_through_a_is_acknowledged_and_visible_through_b(factory, gateways):
    gw_a, gw_b = gateways
    tenant = factory.tenant("cmdab")
    dev = factory.device(tenant)
    # the device answers by hand, its result only once its acknowledgement is on record: two connectors share
    # one MQTT subscription and Mosquitto deals a device's messages out round-robin, so two answers sent
    # back to back can reach Kafka in either order (a late "acknowledged" is then ignored, adr/0134)
    device = CommandDevice(factory, dev, answer_from_attempt=None)
    try:
        r = gw_a.post(f"/v1/devices/{dev.device_id}/commands", headers=_h(tenant, gw_a),
                      json={"name": "blink", "params": {"times": 3}, "timeout_s": 30, "max_attempts": 3})
        assert r.status_code == 202, r.text
        cid = r.json()["command_id"]
        hb = _h(tenant, gw_b)

        def on_b(status):
            r = gw_b.get(f"/v1/devices/{dev.device_id}/commands/{cid}", headers=hb)
            return r.json() if r.status_code == 200 and r.json()["status"] == status else None

        wait_for(lambda: device.received, timeout=120, interval=0.5, what="the device to receive the command")
        ack = device.topics["command_ack"]
        device.client.publish(ack, json.dumps({"command_id": cid, "status": "acknowledged"}), qos=1)
        wait_for(lambda: on_b("acknowledged"), timeout=180, interval=0.5, what="gateway B to see the acknowledgement")
        device.client.publish(ack, json.dumps({"command_id": cid, "status": "succeeded",
                                               "result": {"applied": {"times": 3}}}), qos=1)
        done = wait_for(lambda: on_b("succeeded"), timeout=180, interval=0.5,
                        what="gateway B to report the command succeeded")
        assert [step for step, _ in done["history"]][-2:] == ["acknowledged", "succeeded"]
        # one delivery to the device: two connectors, yet each command is published once
        assert [c["command_id"] for c in device.received] == [cid]
    finally:
        device.close()


def test_each_alert_fires_once(replicated, factory, gateways):
    """Devices on every partition cross a threshold once each: every alert is on Kafka once and gateway B
    lists each once."""
    s = replicated.s
    gw_a, gw_b = gateways
    tenant = factory.tenant("alertab")
    kit = RuleKit(s, gw_a, tenant)
    rules = {}
    for name, metric in (("hot", "temperature"), ("sentinel", "sentinel")):
        r = gw_a.post("/v1/rules", headers=kit.h, json={
            "name": name, "condition": {"type": "threshold", "metric": metric, "op": ">", "value": 80},
            "actions": [{"type": "alert", "severity": "MAJOR", "auto_clear": False}]})
        assert r.status_code == 201, r.text
        rules[name] = (r.json()["rule_id"], r.json()["version"])
    for i in range(2):  # both workers hold the rules: each evaluates the partitions it has
        url = f"http://{s.host}:{replica_port(s.streams_web_port, i)}/rules/{tenant.tenant_id}/"
        for rule_id, version in rules.values():
            wait_for(lambda url=url, rule_id=rule_id, version=version: httpx.get(
                url, headers=web_auth_headers(s), timeout=10).json().get(rule_id) == version,
                timeout=120, what=f"streams replica {i} to hold the rules")
    rid, sentinel = rules["hot"][0], rules["sentinel"][0]
    devices = [f"hot-{k:02d}" for k in range(24)]
    factory.admin.create_devices(tenant.tenant_id, devices)
    t0 = now_ms() - 30_000
    for d in devices:
        kit.send(d, t0, {"temperature": 95.0})
        kit.send(d, t0 + 1000, {"temperature": 96.0})  # still above: the alert stays, no second one
        # a device's alerts come in order: once its sentinel alert is out, a second "hot" one would be too
        kit.send(d, t0 + 2000, {"sentinel": 99.0})
    kit.alerts(sentinel, count=len(devices), timeout=120)
    # every "hot" alert, a second one included, is on its device's partition before that device's sentinel
    # alert: the topic as it is now holds them all (no wait for one that must not come)
    out = [a for a in records_to_end(s.bootstrap_servers, topics.ALERTS.name) if a and a["tenant_id"] == tenant.tenant_id]
    assert sorted(a["device_id"] for a in out if a["rule_id"] == rid) == devices, "an alert missing or fired twice"
    assert sorted(a["device_id"] for a in out if a["rule_id"] == sentinel) == devices
    hb = _h(tenant, gw_b)

    def listed():
        body = gw_b.get("/v1/alerts", headers=hb, params={"rule_id": rid, "limit": 100}).json()
        return body["data"] if body["count"] >= len(devices) else None

    on_b = wait_for(listed, timeout=120, interval=1, what="gateway B to list every alert")
    assert sorted(a["device_id"] for a in on_b) == devices
