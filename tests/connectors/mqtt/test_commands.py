"""MQTT commands go through the connector contract every protocol uses (adr/0122): the MQTT connector's
``CommandRouter`` publishes a fresh attempt QoS 1 to the device with its remaining time to live as the MQTT 5
message expiry and answers SENT on the device's behalf until the device answers itself; a stale attempt
never reaches the device."""

from __future__ import annotations

import json
import threading
import time
import uuid

from confluent_kafka import Producer

from schemas import codec, device_key, topics
from schemas.namespace import device_topics
from tests.connectors.support import records
from tests.utils.factories import wait_for


def _attempt(bootstrap: str, dev, *, emitted: int, expires_at: int | None, name: str) -> str:
    """One delivery attempt as the command agent emits it (protocol unset: MQTT)."""
    cid = uuid.uuid4().hex
    rec = {"tenant_id": dev.tenant_id, "device_id": dev.device_id, "command_id": cid, "name": name,
           "params_json": json.dumps({"hz": 5}), "created_at": emitted, "timeout_ms": 30_000,
           "expires_at": expires_at, "attempt": 1, "idempotency_key": None, "protocol": None, "max_attempts": 1}
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topics.COMMANDS.name, codec("command").encode(rec), device_key(dev.tenant_id, dev.device_id),
              timestamp=emitted)
    assert p.flush(30) == 0
    return cid


def test_the_mqtt_connector_delivers_commands_through_the_command_router(stack, factory, settings):
    t = factory.tenant("mqttcmd")
    dev = factory.device(t)
    got: list[tuple[dict, int | None]] = []
    subscribed = threading.Event()
    client = factory.mqtt_client(dev)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: got.append(
        (json.loads(m.payload), getattr(m.properties, "MessageExpiryInterval", None), time.time()))
    client.subscribe(device_topics(dev.tenant_id, dev.device_id)["commands"], qos=1)
    assert subscribed.wait(10)
    try:
        now = int(time.time() * 1000)
        _attempt(settings.bootstrap_servers, dev, emitted=now - 60_000, expires_at=None, name="stale")
        cid = _attempt(settings.bootstrap_servers, dev, emitted=now, expires_at=now + 60_000, name="fresh")
        wait_for(lambda: got, timeout=60, what="the command at the device")
        (cmd, expiry, arrived), = got  # the stale attempt, on the same partition before it, was skipped
        assert cmd == {"command_id": cid, "name": "fresh", "params": {"hz": 5}, "attempt": 1,
                       "expires_at": now + 60_000}
        # the expiry is what was left of the command's time to live when the connector sent it (whole seconds,
        # however long delivery took on a busy machine: a rebalance of the command consumers can take 30 s)
        left_at_arrival = (now + 60_000) / 1000 - arrived
        assert expiry is not None and expiry < 60 and left_at_arrival - 1 <= expiry <= left_at_arrival + 2
        (ack, headers), = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name,
                                  lambda a: a["device_id"] == dev.device_id, headers=True)
        assert ack["command_id"] == cid and ack["status"] == "SENT" and headers["fs-source"] == b"mqtt"
    finally:
        client.disconnect()
        client.loop_stop()
