"""GraphQL as a tenant's app meets it: a device's latest values and telemetry series (raw and bucketed)
come back for its tenant; another tenant's token sees no such device and no live points; subscriptions
deliver live telemetry over graphql-transport-ws; commands go through the same rules as REST."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from schemas.namespace import device_topics
from tests.utils.factories import publish_json, wait_for

DEVICE_QUERY = """query($id: String!) { device(id: $id) { id deviceType tags
  latest { metric value }
  raw: telemetry(metric: "temperature", limit: 10) { value }
  perMinute: telemetry(metric: "temperature", interval: "1m", agg: "count") { value } } }"""


def _gql(gateway, token, query, variables=None):
    h = {"Authorization": f"Bearer {token}"} if token else {}
    r = gateway.post("/graphql", json={"query": query, "variables": variables or {}}, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def _publish(factory, dev, values, ts=None):
    client = factory.mqtt_client(dev)
    publish_json(client, device_topics(dev.tenant_id, dev.device_id)["telemetry"],
                 {"ts": ts or int(time.time() * 1000), "values": values})
    client.disconnect()


@pytest.fixture(scope="module")
def fleet(stack, factory, gateway):
    t = factory.tenant("gql")
    dev = factory.device(t, device_type="pump", tags=["north"])
    t0 = int(time.time() // 60 * 60 * 1000) - 120_000
    client = factory.mqtt_client(dev)
    publish_json(client, device_topics(t.tenant_id, dev.device_id)["telemetry"],
                 [{"ts": t0 + i * 1000, "values": {"temperature": 20.0 + i}} for i in range(5)])
    client.disconnect()
    token = t.token(gateway)
    wait_for(lambda: len(gateway.get(f"/v1/devices/{dev.device_id}/telemetry", params={"metric": "temperature"},
                                     headers={"Authorization": f"Bearer {token}"}).json()["points"]) == 5,
             timeout=60, what="points stored")
    return {"tenant": t, "dev": dev, "token": token}


def test_device_with_latest_values_and_series(fleet, gateway):
    dev = fleet["dev"]
    body = _gql(gateway, fleet["token"], DEVICE_QUERY, {"id": dev.device_id})
    assert "errors" not in body, body
    d = body["data"]["device"]
    assert (d["id"], d["deviceType"], d["tags"]) == (dev.device_id, "pump", ["north"])
    assert d["latest"] == [{"metric": "temperature", "value": 24.0}]
    assert [p["value"] for p in d["raw"]] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert sum(p["value"] for p in d["perMinute"]) == 5
    listed = _gql(gateway, fleet["token"], '{ devices(tag: "north") { id latest { value } } }')
    assert listed["data"]["devices"] == [{"id": dev.device_id, "latest": [{"value": 24.0}]}]


def test_another_tenant_and_missing_tokens_get_nothing(fleet, factory, gateway):
    stranger = factory.tenant("gql-stranger")
    body = _gql(gateway, stranger.token(gateway), DEVICE_QUERY, {"id": fleet["dev"].device_id})
    assert body["data"]["device"] is None
    assert _gql(gateway, stranger.token(gateway), '{ devices { id } }')["data"]["devices"] == []
    anon = _gql(gateway, None, '{ devices { id } }')
    assert anon["errors"][0]["extensions"]["code"] == "unauthenticated"
    weak = _gql(gateway, fleet["tenant"].token(gateway, scope="devices:read"), DEVICE_QUERY, {"id": fleet["dev"].device_id})
    assert weak["errors"][0]["extensions"]["code"] == "insufficient_scope"


def test_bad_interval_is_an_error_with_a_reason(fleet, gateway):
    body = _gql(gateway, fleet["token"], 'query($id: String!) { device(id: $id) { '
                'telemetry(metric: "temperature", interval: "5y") { value } } }', {"id": fleet["dev"].device_id})
    err = body["errors"][0]
    assert err["extensions"]["code"] == "bad_interval" and "5y" in err["message"]


def test_send_command_follows_the_rest_rules(fleet, factory, gateway):
    mutation = 'mutation($d: String!) { sendCommand(deviceId: $d, name: "reboot", params: {delay: 1}) }'
    ok = _gql(gateway, fleet["token"], mutation, {"d": fleet["dev"].device_id})
    assert ok["data"]["sendCommand"]["status"] == "queued"
    other = _gql(gateway, factory.tenant("gql-cmd").token(gateway), mutation, {"d": fleet["dev"].device_id})
    assert other["errors"][0]["extensions"]["code"] == "not_found"


@contextlib.contextmanager
def _subscribe(url, token, device_ids):
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:
        yield _start(ws, token, device_ids)


def _start(ws, token, device_ids):
    ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    assert json.loads(ws.recv(10))["type"] == "connection_ack"
    ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($ids: [String!]) { telemetry(deviceIds: $ids) { deviceId values } }",
        "variables": {"ids": device_ids}}}))
    return ws


def _until_live(ws, factory, dev, timeout=90):
    """Publishes probe points of ``dev`` until the subscription delivers one: graphql-transport-ws does not
    acknowledge a subscribe, so this is how a client knows the gateway's live hub has registered it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _publish(factory, dev, {"probe": 1.0})
        try:
            msg = json.loads(ws.recv(5))
        except TimeoutError:
            continue
        assert msg["type"] == "next" and msg["payload"]["data"]["telemetry"]["values"] == {"probe": 1.0}, msg
        return
    raise AssertionError(f"no probe point of {dev.device_id} delivered within {timeout}s")


def _recv(ws, probed, timeout=60):
    """The next message that is not a late probe point of ``probed``."""
    while True:
        msg = json.loads(ws.recv(timeout))
        point = msg.get("payload", {}).get("data", {}).get("telemetry") or {}
        if not (point.get("deviceId") == probed.device_id and point.get("values") == {"probe": 1.0}):
            return msg


def test_subscription_delivers_live_telemetry_only_to_its_tenant(fleet, factory, gateway, settings):
    url = f"ws://{settings.host}:{settings.gateway_port}/graphql"
    dev = fleet["dev"]
    stranger = factory.tenant("gql-live")
    own = factory.device(stranger)
    with _subscribe(url, fleet["token"], [dev.device_id]) as mine, \
            _subscribe(url, stranger.token(gateway), [dev.device_id, own.device_id]) as theirs:
        _until_live(mine, factory, dev)  # both subscriptions registered with the gateway's live hub
        _until_live(theirs, factory, own)
        _publish(factory, dev, {"temperature": 30.5})
        _publish(factory, own, {"marker": 1.0})
        msg = _recv(mine, dev)
        assert msg["type"] == "next"
        assert msg["payload"]["data"]["telemetry"] == {"deviceId": dev.device_id, "values": {"temperature": 30.5}}
        got = _recv(theirs, own)  # the stranger's first live point is its own marker, never the other
        assert got["payload"]["data"]["telemetry"] == {"deviceId": own.device_id, "values": {"marker": 1.0}}
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as bad:
        bad.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer forged"}}))
        with pytest.raises(ConnectionClosed) as info:
            bad.recv(10)
        assert info.value.rcvd.code == 4403


def test_an_alert_is_stored_delivered_live_and_acknowledged(fleet, factory, gateway, settings):
    """A rule's alert (produced here as the rules agent would) shows in the device's alert history, reaches a
    WebSocket subscribed to alerts, and is acknowledged through GraphQL; another tenant cannot acknowledge it."""
    import uuid

    from confluent_kafka import Producer

    from schemas import codec, device_key, topics

    dev, alert_id = fleet["dev"], f"al-{uuid.uuid4().hex[:8]}"
    with connect(f"ws://{settings.host}:{settings.gateway_port}/v1/stream?access_token={fleet['token']}",
                 open_timeout=10) as ws:
        assert json.loads(ws.recv(10))["type"] == "ready"
        ws.send(json.dumps({"type": "subscribe", "id": "a", "kinds": ["alert"]}))
        assert json.loads(ws.recv(10))["type"] == "subscribed"
        p = Producer({"bootstrap.servers": settings.bootstrap_servers})
        p.produce(topics.ALERTS.name, key=device_key(dev.tenant_id, dev.device_id), value=codec("alert").encode({
            "tenant_id": dev.tenant_id, "alert_id": alert_id, "rule_id": "too-hot", "device_id": dev.device_id,
            "severity": "MAJOR", "state": "ACTIVE", "time": int(time.time() * 1000), "message": "too hot"}))
        assert p.flush(30) == 0
        live = json.loads(ws.recv(60))
        assert (live["type"], live["alert_id"], live["state"]) == ("alert", alert_id, "ACTIVE")

    history = 'query($id: String!) { device(id: $id) { alerts { alertId state severity } } }'
    stored = wait_for(lambda: _gql(gateway, fleet["token"], history, {"id": dev.device_id})["data"]["device"]["alerts"],
                      timeout=60, what="the alert in ClickHouse")
    assert stored == [{"alertId": alert_id, "state": "ACTIVE", "severity": "MAJOR"}]

    ack = 'mutation($a: String!) { acknowledgeAlert(alertId: $a) }'
    other = _gql(gateway, factory.tenant("gql-ack").token(gateway), ack, {"a": alert_id})
    assert other["errors"][0]["extensions"]["code"] == "not_found"
    done = wait_for(lambda: _gql(gateway, fleet["token"], ack, {"a": alert_id}).get("data"), timeout=30,
                    what="the gateway's alert view to hold the alert")
    assert done["acknowledgeAlert"]["state"] == "ACKNOWLEDGED"
