"""A retained status (a device's Last Will is usually retained) is not replayed as a new device event each
time a connector subscribes: Mosquitto 2.0 hands retained messages to shared subscriptions too, and the local
stack's single connector subscribes plainly (adr/0111), so without Retain Handling 2 every connector restart
turned each retained ``offline`` into a fresh OFFLINE event."""

from __future__ import annotations

import uuid

import pytest

from schemas import topics
from schemas.namespace import device_topics
from tests.connectors.mqtt.support import start_connector, stop_all, subscriptions
from tests.connectors.support import records
from tests.utils.factories import publish_json, wait_for


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "plain"])
def test_a_retained_offline_is_not_a_new_event_when_a_connector_subscribes(stack, factory, settings, tmp_path,
                                                                           shared):
    t = factory.tenant("retained")
    dev = factory.device(t)
    status_topic = device_topics(t.tenant_id, dev.device_id)["status"]
    device = factory.mqtt_client(dev)
    device.publish(status_topic, b"offline", qos=1, retain=True).wait_for_publish(10)

    group = f"retained-{uuid.uuid4().hex[:8]}" if shared else ""
    cid = f"retained-{uuid.uuid4().hex[:8]}"
    procs = [start_connector(settings, tmp_path, cid, group)]
    try:
        wait_for(lambda: subscriptions(tmp_path, cid) >= 1, timeout=60, what="connector subscribed")
        # the marker: a live status after the subscription; the same connector writes events of one device to
        # one partition in order, so a replayed retained OFFLINE would come before this ONLINE
        publish_json(device, status_topic, b"online", qos=1).wait_for_publish(10)

        def ours(got) -> list[str]:
            return [r["event_type"] for r, h in got if h.get("fs-instance") == cid.encode()]

        got = records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                      lambda r: r["device_id"] == dev.device_id, headers=True, timeout=60,
                      until=lambda found: "ONLINE" in ours(found))
        assert ours(got) == ["ONLINE"], ours(got)
    finally:
        device.loop_stop()
        device.disconnect()
        stop_all(procs)
