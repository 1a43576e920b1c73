"""The spine, as a device and a tenant meet it: one MQTT 5 QoS1 reading from a certificate device is
queryable by its tenant through the gateway, and by no other tenant; bad JSON beside it is dead-lettered
with a reason while the good reading is kept."""

from __future__ import annotations

import time

from schemas import topics
from schemas.namespace import device_topics
from tests.utils.factories import publish_json, wait_for
from tests.utils.kafka import find_records


def _points(gateway, token, device_id, metric="temperature"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return gateway.get(f"/v1/devices/{device_id}/telemetry", params={"metric": metric}, headers=headers)


def test_reading_travels_end_to_end_and_stays_with_its_tenant(stack, factory, gateway):
    acme, other = factory.tenant("acme"), factory.tenant("other")
    dev = factory.device(acme, "boiler-1")
    client = factory.mqtt_client(dev)
    ts = int(time.time() * 1000)
    info = publish_json(client, device_topics(acme.tenant_id, dev.device_id)["telemetry"],
                        {"ts": ts, "values": {"temperature": 21.5}})
    assert info.rc == 0

    token = acme.token(gateway)
    body = wait_for(lambda: (_points(gateway, token, dev.device_id).json().get("points") or None), timeout=60,
                    what="the reading to be queryable")
    assert body == [{"ts": _iso(ts), "value": 21.5}]

    # another tenant's token: the device does not exist for it — no data, no hint
    r = _points(gateway, other.token(gateway), dev.device_id)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # no token, and a token without the telemetry scope
    assert _points(gateway, "", dev.device_id).status_code == 401
    assert _points(gateway, acme.token(gateway, scope="devices:read"), dev.device_id).status_code == 403
    client.disconnect()


def test_bad_json_goes_to_dead_letter_and_the_good_reading_next_to_it_is_kept(stack, factory, gateway, settings):
    t = factory.tenant("dlq")
    dev = factory.device(t)
    client = factory.mqtt_client(dev)
    topic = device_topics(t.tenant_id, dev.device_id)["telemetry"]
    ts = int(time.time() * 1000)
    publish_json(client, topic, b'{"ts": 1, "values": {"temperature": 20.0')  # truncated JSON
    publish_json(client, topic, [{"ts": ts, "values": {"temperature": 19.25}},
                                 {"ts": ts + 1, "values": {"temperature": {"nested": True}}}])

    dead = find_records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                        lambda r: r.get("device_id") == dev.device_id, count=2, timeout=30)
    by_code = {d["reason_code"]: d for d in dead}
    assert set(by_code) == {"invalid_json", "wrong_type"}
    assert by_code["invalid_json"]["tenant_id"] == t.tenant_id
    assert by_code["invalid_json"]["raw"].startswith(b'{"ts": 1')
    assert "not valid UTF-8 JSON" in by_code["invalid_json"]["reason"]
    assert "temperature" in by_code["wrong_type"]["reason"]

    token = t.token(gateway)
    points = wait_for(lambda: _points(gateway, token, dev.device_id).json().get("points"), timeout=60,
                      what="the good reading")
    assert points == [{"ts": _iso(ts), "value": 19.25}]
    client.disconnect()


def test_device_cannot_publish_into_another_devices_namespace(stack, factory, gateway, settings):
    """A publish outside the device's namespace is refused (MQTT 5 PUBACK 0x87) and costs the device nothing
    else: the same connection carries its next reading. (It used to close the connection, adr/0100; paho's
    automatic reconnect hid that on an idle machine, and on a busy one the next publish fell into the gap.)
    Every wait is on a condition: no step depends on how fast the machine is."""
    import threading

    t = factory.tenant("ns")
    mine, victim = factory.device(t), factory.device(t)
    client = factory.mqtt_client(mine)
    codes: dict[int, int] = {}
    disconnects: list = []
    done = threading.Condition()

    def on_publish(_c, _u, mid, rc, _p):
        with done:
            codes[mid] = rc.value
            done.notify_all()

    client.on_publish = on_publish
    client.on_disconnect = lambda *args: disconnects.append(args)
    foreign = client.publish(device_topics(t.tenant_id, victim.device_id)["telemetry"],
                             '{"values": {"temperature": 99}}', qos=1)
    own = client.publish(device_topics(t.tenant_id, mine.device_id)["telemetry"], '{"values": {"temperature": 1}}',
                         qos=1)
    with done:
        assert done.wait_for(lambda: foreign.mid in codes and own.mid in codes, timeout=60), codes
    assert codes == {foreign.mid: 135, own.mid: 0}  # Not authorized; success
    assert not disconnects and client.is_connected()
    token = t.token(gateway)
    wait_for(lambda: _points(gateway, token, mine.device_id).json().get("points"), timeout=60, what="own reading")
    assert _points(gateway, token, victim.device_id).json()["points"] == []
    client.disconnect()


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def test_a_certificate_unknown_to_the_broker_can_use_no_topic(stack, factory, settings):
    """An SRE's guarantee: a valid platform certificate whose device the broker was never told about
    (or whose client entry is gone) publishes nowhere, even into its own namespace."""
    import threading

    from tests.utils.factories import TestDevice

    t = factory.tenant("ghost")
    ghost_id = "ghost-1"
    cert_dir = settings.root / "test-devices" / t.tenant_id / ghost_id
    issued = factory.admin.cas.issue_for_device(t.tenant_id, ghost_id)  # a certificate, but no broker client
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "device.crt").write_text(issued.certificate_pem)
    (cert_dir / "device.key").write_text(issued.private_key_pem)
    (cert_dir / "ca.crt").write_bytes(factory.admin.pki.ca_cert.read_bytes())
    ghost = TestDevice(t.tenant_id, ghost_id, cert_dir)
    codes: list[int] = []
    acked = threading.Event()
    try:
        client = factory.mqtt_client(ghost)
    except AssertionError:
        return  # refused at CONNECT: also a refusal
    client.on_publish = lambda _c, _u, _mid, rc, _p: (codes.append(rc.value), acked.set())
    client.publish(device_topics(t.tenant_id, ghost_id)["telemetry"], '{"values": {"t": 1}}', qos=1)
    assert acked.wait(10), "no PUBACK for the ghost's publish"
    assert codes == [135]  # MQTT 5: Not authorized
    client.disconnect()
