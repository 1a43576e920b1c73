"""Live delivery as a tenant's dashboard meets it: a WebSocket client and an SSE client receive a point a
device just published over MQTT; another tenant receives nothing; an SSE client that reconnects with
Last-Event-ID gets exactly what it missed; a WebSocket client that stops reading does not delay another."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import uuid

import httpx
import pytest
from confluent_kafka import Producer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from schemas import codec, device_key, topics
from schemas.namespace import device_topics
from schemas.wire import HEADER_LEN
from tests.utils.factories import publish_json
from tests.utils.kafka import find_records


@pytest.fixture(scope="module")
def ws_url(settings):
    return f"ws://{settings.host}:{settings.gateway_port}/v1/stream"


@contextlib.contextmanager
def _ws(ws_url, token, **kw):
    with connect(f"{ws_url}?access_token={token}", open_timeout=10, **kw) as ws:
        assert json.loads(ws.recv(10))["type"] == "ready"
        yield ws


def _subscribe(ws, sub_id="s1", **filters):
    ws.send(json.dumps({"type": "subscribe", "id": sub_id, **filters}))
    assert json.loads(ws.recv(10)) == {"type": "subscribed", "id": sub_id}


def _next(ws, want, timeout=60):
    """The next message satisfying ``want``, skipping others."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(max(0.1, deadline - time.monotonic())))
        if want(msg):
            return msg
    raise AssertionError("no matching message")


class SSEReader:
    """Reads an SSE stream in a thread and queues its events as dicts (id, event, data)."""

    def __init__(self, base_url: str, path: str, headers: dict):
        self.events: queue.Queue = queue.Queue()
        self.status: queue.Queue = queue.Queue()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=120))
        self._thread = threading.Thread(target=self._run, args=(path, headers), daemon=True)
        self._thread.start()
        self.code = self.status.get(timeout=30)

    def _run(self, path, headers):
        try:
            with self._client.stream("GET", path, headers=headers) as r:
                self.status.put(r.status_code)
                ev: dict = {}
                for line in r.iter_lines():
                    if line == "":
                        if "event" in ev:
                            self.events.put(ev)
                        ev = {}
                    elif line.startswith(":"):
                        self.events.put({"event": "heartbeat"})
                    else:
                        k, _, v = line.partition(": ")
                        ev[k] = json.loads(v) if k == "data" else v
        except (httpx.HTTPError, RuntimeError):
            pass

    def next(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if ev["event"] == event:
                return ev

    def close(self):
        self._client.close()


def _publish(factory, dev, values):
    client = factory.mqtt_client(dev)
    publish_json(client, device_topics(dev.tenant_id, dev.device_id)["telemetry"],
                 {"ts": int(time.time() * 1000), "values": values})
    client.disconnect()


def test_websocket_and_sse_clients_receive_a_live_point(stack, factory, gateway, settings, ws_url):
    t = factory.tenant("live")
    dev = factory.device(t)
    token = t.token(gateway)
    with _ws(ws_url, token) as ws:
        _subscribe(ws, devices=[dev.device_id], metrics=["temperature"])
        sse = SSEReader(str(gateway.base_url), f"/v1/devices/{dev.device_id}/events?heartbeat=1",
                        {"Authorization": f"Bearer {token}"})
        assert sse.code == 200
        assert sse.next("heartbeat", timeout=30)
        _publish(factory, dev, {"temperature": 23.5, "humidity": 40.0})

        msg = _next(ws, lambda m: m["type"] == "telemetry")
        assert msg["device_id"] == dev.device_id and msg["values"] == {"temperature": 23.5}  # narrowed to the metric
        assert msg["subscriptions"] == ["s1"]
        ev = sse.next("telemetry")
        assert ev["data"]["values"] == {"temperature": 23.5, "humidity": 40.0}
        assert ev["id"].startswith("t")
        sse.close()


def test_another_tenant_receives_nothing_live(stack, factory, gateway, settings, ws_url):
    owner, stranger = factory.tenant("owner"), factory.tenant("stranger")
    dev, own_dev = factory.device(owner), factory.device(stranger)
    stoken = stranger.token(gateway)
    with _ws(ws_url, stoken) as ws:
        _subscribe(ws, "all")  # everything the stranger's tenant may see
        _subscribe(ws, "theirs", devices=[dev.device_id])  # naming the other tenant's device gives nothing either
        r = gateway.get(f"/v1/devices/{dev.device_id}/events", headers={"Authorization": f"Bearer {stoken}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"

        _publish(factory, dev, {"temperature": 99.0})
        _publish(factory, own_dev, {"marker": 1.0})  # published after: once it arrives, the other has gone past
        msg = _next(ws, lambda m: m["type"] == "telemetry")
        assert msg["device_id"] == own_dev.device_id and msg["values"] == {"marker": 1.0}


def test_live_streams_refuse_missing_or_weak_tokens(stack, factory, gateway, ws_url):
    t = factory.tenant("auth")
    dev = factory.device(t)
    for token, code in (("forged", 4401), (t.token(gateway, scope="devices:read"), 4403)):
        with connect(f"{ws_url}?access_token={token}", open_timeout=10) as ws, \
                pytest.raises(ConnectionClosed) as info:
            ws.recv(10)
        assert info.value.rcvd.code == code
    # a first-message token works for clients that cannot put it in the URL
    with connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": t.token(gateway)}))
        assert json.loads(ws.recv(10))["tenant_id"] == t.tenant_id
        ws.send("not json")
        assert json.loads(ws.recv(10))["error"]["code"] == "invalid_json"
    r = gateway.get(f"/v1/devices/{dev.device_id}/events")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


def test_sse_resumes_from_last_event_id_with_exactly_what_was_missed(stack, factory, gateway, settings):
    t = factory.tenant("resume")
    dev = factory.device(t)
    h = {"Authorization": f"Bearer {t.token(gateway)}"}
    path = f"/v1/devices/{dev.device_id}/events"
    sse = SSEReader(str(gateway.base_url), path, h)
    _publish(factory, dev, {"seq": 1.0})
    first = sse.next("telemetry")
    sse.close()
    _publish(factory, dev, {"seq": 2.0})
    _publish(factory, dev, {"seq": 3.0})
    find_records(settings.bootstrap_servers, topics.TELEMETRY.name,  # both on the validated topic before resuming
                 lambda r: r["tenant_id"] == t.tenant_id and r["values"].get("seq") in (2.0, 3.0), count=2, timeout=60)
    again = SSEReader(str(gateway.base_url), path, {**h, "Last-Event-ID": first["id"]})
    got = [again.next("telemetry")["data"]["values"]["seq"] for _ in range(2)]
    assert got == [2.0, 3.0]
    _publish(factory, dev, {"seq": 4.0})
    assert again.next("telemetry")["data"]["values"]["seq"] == 4.0  # and live again, without repeats
    again.close()
    r = gateway.get(path, headers={**h, "Last-Event-ID": "garbage"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_last_event_id"


def test_a_stalled_websocket_client_does_not_delay_another(stack, factory, gateway, settings, ws_url):
    t = factory.tenant("stall")
    dev = factory.device(t)
    token = t.token(gateway)
    # max_queue=1: the client library stops reading the socket as soon as one frame waits unread
    with _ws(ws_url, token, max_queue=1) as stalled, _ws(ws_url, token) as healthy:
        _subscribe(stalled, "all")
        _subscribe(healthy, "marker", metrics=["marker"])
        _flood(settings, t, dev)
        msg = _next(healthy, lambda m: m["type"] == "telemetry")
        assert msg["values"] == {"marker": 1.0}
        # the stalled client, once it reads again, learns that the gateway dropped what it could not hold
        dropped = _next(stalled, lambda m: m["type"] == "dropped", timeout=120)
        assert dropped["count"] > 0


def _flood(settings, t, dev):
    """~3000 x 8 KB points, far more than a connection's buffer and socket hold, then one marker point."""
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20})
    tel = codec("telemetry")
    now = int(time.time() * 1000)
    blob = uuid.uuid4().hex * 256
    for i in range(3000):
        p.produce(topics.TELEMETRY.name, key=device_key(t.tenant_id, dev.device_id),
                  value=tel.encode({"tenant_id": t.tenant_id, "device_id": dev.device_id, "event_time": now + i,
                                    "receive_time": now, "protocol": "http", "values": {"blob": blob}}))
        p.poll(0)
    p.produce(topics.TELEMETRY.name, key=device_key(t.tenant_id, dev.device_id),
              value=tel.encode({"tenant_id": t.tenant_id, "device_id": dev.device_id, "event_time": now + 5000,
                                "receive_time": now, "protocol": "http", "values": {"marker": 1.0}}))
    assert p.flush(30) == 0


# -- the hub's per-batch path, without a stack (adr/0065) ----------------------------------------------
class _Msg:
    def __init__(self, topic, partition, offset, value):
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def error(self):
        return None


def _tel(tenant, device, i):
    return codec("telemetry").encode({"tenant_id": tenant, "device_id": device, "event_time": i, "receive_time": i,
                                      "protocol": "mqtt", "values": {"v": float(i)}})


def test_hub_decodes_only_watched_tenants_and_routes_each_batch_by_tenant():
    import asyncio

    from gateway.live.hub import LiveHub, Subscriber, wire_tenant

    async def run():
        hub = LiveHub("unused:1", queue_size=10)
        a = hub.subscribe(Subscriber("tenant-a", lambda ev: True, maxsize=10))
        b = hub.subscribe(Subscriber("tenant-b", lambda ev: ev.device_id == "b2", maxsize=10,
                                     devices=frozenset({"b2"})))
        t = topics.TELEMETRY.name
        msgs = [_Msg(t, 0, 1, _tel("tenant-a", "a1", 1)), _Msg(t, 1, 1, _tel("tenant-b", "b1", 2)),
                _Msg(t, 1, 2, _tel("tenant-b", "b2", 3)), _Msg(t, 2, 1, _tel("tenant-c", "c1", 4)),
                _Msg(t, 0, 2, b"\xc3\x01garbage"), _Msg(t, 0, 3, _tel("tenant-a", "a1", 5))]
        assert wire_tenant(msgs[3].value()) == "tenant-c"
        by_tenant = hub._decode_watched(msgs)
        assert set(by_tenant) == {"tenant-a", "tenant-b"}  # nobody watches tenant-c: never decoded
        assert [ev.offset for ev in by_tenant["tenant-a"]] == [1, 3]  # Kafka order kept
        assert [ev.device_id for ev in by_tenant["tenant-b"]] == ["b2"]  # b1 is nobody's device: not decoded
        hub._dispatch(by_tenant)
        assert [ev.device_id for ev in await a.next_batch(1)] == ["a1", "a1"]
        assert [ev.device_id for ev in await b.next_batch(1)] == ["b2"]
        assert hub.stats["delivered"] == 3

    asyncio.run(run())


def test_offer_many_applies_each_overflow_policy_like_offer():
    import asyncio

    from gateway.live.hub import LiveEvent, Subscriber

    async def run():
        evs = [LiveEvent("telemetry", "t", 0, i, "x", "d", {"values": {}}) for i in range(5)]
        drop = Subscriber("x", lambda ev: True, maxsize=3)
        assert drop.offer_many(evs) == 3 and drop.dropped == 2 and not drop.overflowed
        close = Subscriber("x", lambda ev: True, maxsize=3, close_on_overflow=True)
        assert close.offer_many(evs) == 3 and close.overflowed
        assert close.offer_many(evs) == 0  # an overflowed SSE subscriber takes nothing more
        assert [ev.offset for ev in await drop.next_batch(1)] == [0, 1, 2]

    asyncio.run(run())


def test_hub_device_interest_follows_subscribers_and_reads_every_record_kind():
    from gateway.live.hub import LiveHub, Subscriber, wire_device
    from gateway.live.websocket import Connection, _handle

    hub = LiveHub("unused:1")
    conn = Connection()
    ws = hub.subscribe(Subscriber("t", conn.matches, maxsize=10, devices=frozenset()))
    assert hub._interest == {"t": frozenset()}  # connected, nothing subscribed: nothing to decode
    _handle(conn, json.dumps({"type": "subscribe", "id": "s1", "devices": ["d1"]}))
    hub.set_devices(ws, conn.devices())
    sse = hub.subscribe(Subscriber("t", lambda ev: True, maxsize=10, devices=frozenset({"d2"})))
    assert hub._interest == {"t": frozenset({"d1", "d2"})}
    _handle(conn, json.dumps({"type": "subscribe", "id": "s2", "kinds": ["alert"]}))  # every device
    hub.set_devices(ws, conn.devices())
    assert hub._interest == {"t": None}
    hub.unsubscribe(ws)
    assert hub._interest == {"t": frozenset({"d2"})}
    hub.unsubscribe(sse)
    assert hub._interest == {}

    alert = codec("alert").encode({"tenant_id": "t", "alert_id": "a1", "rule_id": "r1", "device_id": "dev-a",
                                   "severity": "MAJOR", "state": "ACTIVE", "time": 1})
    event = codec("device_event").encode({"tenant_id": "t", "device_id": "dev-e", "event_type": "ONLINE",
                                          "time": 1, "source": "mqtt"})
    assert wire_device(topics.ALERTS.name, alert) == "dev-a"
    assert wire_device(topics.DEVICE_EVENTS.name, event) == "dev-e"
    assert wire_device(topics.TELEMETRY.name, _tel("t", "dev-t", 1)) == "dev-t"
    assert wire_device(topics.TELEMETRY.name, _tel("t", "dev-t", 1)[:HEADER_LEN + 4]) is None  # device cut short
