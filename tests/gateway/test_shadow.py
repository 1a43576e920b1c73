"""Device shadows as a tenant and a device meet them: desired state set while the device is offline is
readable at once and reaches the real MQTT device as a delta when it comes back online; a report clears
the delta; If-Match guards concurrent writers; oversize and foreign requests are refused clearly."""

from __future__ import annotations

import json
import queue
import threading

from schemas.namespace import device_topics
from tests.utils.factories import publish_json, wait_for


def _h(tenant, gateway, scope=None):
    return {"Authorization": f"Bearer {tenant.token(gateway, scope)}"}


def _shadow(gateway, h, device_id):
    return gateway.get(f"/v1/devices/{device_id}/shadow", headers=h).json()


def test_delta_set_while_offline_reaches_the_device_when_it_comes_online(stack, factory, gateway):
    t = factory.tenant("shadow")
    dev = factory.device(t)
    h = _h(t, gateway)
    assert _shadow(gateway, h, dev.device_id)["version"] == 0

    r = gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers=h, json={"setpoint": 21.5, "mode": "eco"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 1 and body["delta"] == {"setpoint": 21.5, "mode": "eco"}
    assert r.headers["ETag"] == '"1"'
    assert set(body["metadata"]["desired"]) == {"setpoint", "mode"}
    assert _shadow(gateway, h, dev.device_id)["desired"] == {"setpoint": 21.5, "mode": "eco"}  # device offline

    # the device comes online: subscribes to its delta topic, then announces itself
    topics = device_topics(t.tenant_id, dev.device_id)
    deltas: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    client = factory.mqtt_client(dev)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: deltas.put(json.loads(m.payload))
    client.subscribe(topics["shadow_delta"], qos=1)
    assert subscribed.wait(10)
    publish_json(client, topics["status"], "online")
    got = deltas.get(timeout=60)
    assert got["state"] == {"setpoint": 21.5, "mode": "eco"} and got["version"] == 1

    # the device applies part of it and reports; the delta shrinks
    publish_json(client, topics["shadow_reported"], {"state": {"setpoint": 21.5, "firmware": "1.2"}})
    doc = wait_for(lambda: (d := _shadow(gateway, h, dev.device_id))["version"] == 2 and d, timeout=30,
                   what="the report to be applied")
    assert doc["delta"] == {"mode": "eco"}
    assert doc["reported"] == {"setpoint": 21.5, "firmware": "1.2"}
    assert set(doc["metadata"]["reported"]) == {"setpoint", "firmware"}

    # a change while it is online reaches it at once
    r = gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers={**h, "If-Match": '"2"'},
                      json={"mode": None, "fan": 3})
    assert r.status_code == 200 and r.json()["version"] == 3
    got = deltas.get(timeout=60)
    # Re-sends of a delta it already has may come first: both the connector and the status agent announce
    # the reconnect, and the second announcement can land after the report (adr/0053 dedups only within
    # 10 s), re-sending the then-current delta (v1 or v2). The change made while online must still arrive.
    while got["version"] < 3:
        got = deltas.get(timeout=60)
    assert got == {"version": 3, "state": {"fan": 3}, "timestamp": got["timestamp"]}
    client.disconnect()
    client.loop_stop()


def test_stale_if_match_is_refused_with_412_and_nothing_changes(stack, factory, gateway):
    t = factory.tenant("shadowim")
    dev = factory.device(t)
    h = _h(t, gateway)
    assert gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers=h, json={"a": 1}).json()["version"] == 1
    assert gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers=h, json={"a": 2}).json()["version"] == 2
    r = gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers={**h, "If-Match": "1"}, json={"a": 3})
    assert r.status_code == 412 and r.json()["error"]["code"] == "version_mismatch"
    doc = _shadow(gateway, h, dev.device_id)
    assert doc["version"] == 2 and doc["desired"] == {"a": 2}
    r = gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers={**h, "If-Match": "2"}, json={"a": 3})
    assert r.status_code == 200 and r.json()["version"] == 3 and r.json()["desired"] == {"a": 3}


def test_shadow_requests_are_refused_clearly(stack, factory, gateway):
    t, other = factory.tenant("shadowbad"), factory.tenant("shadowother")
    dev = factory.device(t)
    h = _h(t, gateway)
    r = gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers=h, json={"blob": "x" * 70_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "shadow_too_large"
    r = gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers={**h, "If-Match": "soon"}, json={"a": 1})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_if_match"
    assert gateway.get(f"/v1/devices/{dev.device_id}/shadow", headers=_h(other, gateway)).status_code == 404
    r = gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", headers=_h(t, gateway, "devices:read"),
                      json={"a": 1})
    assert r.status_code == 403
