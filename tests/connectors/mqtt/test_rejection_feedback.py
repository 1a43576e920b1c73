"""What an MQTT 5 device learns about refused input (adr/0181), with paho as the device: the broker's PUBACK
says 0x87 for what the broker itself refuses (another device's topic) and Success for what it accepted, even a
payload the connector refuses later; the connector's and the validate agent's verdicts then arrive on the
device's own ``…/rejections`` topic."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

from schemas.namespace import device_topics
from tests.utils.factories import wait_for


def _publish_and_get_reason(client: mqtt.Client, topic: str, payload: bytes) -> int:
    """The PUBACK reason code the broker answered this QoS 1 PUBLISH with."""
    got: dict[int, int] = {}
    done = threading.Event()

    def on_publish(_c, _u, mid, reason_code, _props):
        got[mid] = reason_code.value
        done.set()

    client.on_publish = on_publish
    info = client.publish(topic, payload, qos=1)
    assert done.wait(15) and info.mid in got, "no PUBACK"
    return got[info.mid]


def test_puback_codes_and_rejection_notices(stack, factory, gateway):
    t = factory.tenant("fb")
    h = {"Authorization": f"Bearer {t.token(gateway)}"}
    assert gateway.post("/v1/device-types", json={"name": "probe", "metrics": {"temperature": {"type": "number"}}},
                        headers=h).status_code == 201
    dev = factory.device(t, device_type="probe")
    other = factory.device(t)
    mine = device_topics(t.tenant_id, dev.device_id)
    notices: list[dict] = []
    subscribed = threading.Event()
    client = factory.mqtt_client(dev, connect=False)
    client.on_connect = lambda c, *_: c.subscribe(mine["rejections"], qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, msg: notices.append(json.loads(msg.payload))
    client.connect(factory.s.mqtt_broker_host, factory.s.mqtt_tls_port, keepalive=30)
    client.loop_start()
    try:
        assert subscribed.wait(15), "could not subscribe to its rejections topic"
        # the broker refuses a foreign topic itself, and says so in the PUBACK
        assert _publish_and_get_reason(client, device_topics(t.tenant_id, other.device_id)["telemetry"],
                                       b'{"values":{"x":1}}') == 0x87
        # bad JSON is acknowledged by the broker (it has queued it for the connector), refused by the connector,
        # and the verdict reaches the device on its rejections topic; republished until the notifier (which
        # starts at the end of the dead-letter topic) is surely following
        def refused(code: str, payload: bytes):
            assert _publish_and_get_reason(client, mine["telemetry"], payload) == 0
            return [n for n in notices if n["reason_code"] == code]

        bad = wait_for(lambda: refused("invalid_json", b"{oops"), timeout=60, interval=2, what="invalid_json notice")
        assert bad[0]["source"] == "mqtt" and bad[0]["payload_sample"] == "{oops"
        assert bad[0]["origin"] == mine["telemetry"] and bad[0]["reason"]
        typed = wait_for(lambda: refused("metric_type", b'{"values":{"temperature":"hot"}}'), timeout=60,
                         interval=2, what="metric_type notice")
        assert typed[0]["source"] == "streams.validate" and "'hot' is not a number" in typed[0]["reason"]
    finally:
        client.disconnect()
        client.loop_stop()
