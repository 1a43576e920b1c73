"""Tells MQTT devices why their input was refused (adr/0181): every dead letter that names a tenant and a device
is published to ``fs/<t>/<d>/rejections`` (QoS 1, not retained), whichever stage refused it (this connector's
parser, the validate agent's registry or typed-metric checks, the HTTP or CoAP connector).

The device's PUBACK cannot carry these verdicts: Mosquitto acknowledges a PUBLISH to the device as soon as it has
queued the message for its subscribers, before this connector (one of them) has read it. A device that wants
the verdicts subscribes to its ``rejections`` topic; the API (``GET /v1/devices/{id}/rejections``) has them too.

Message (JSON)::

    {"time": <epoch ms>, "reason_code": "metric_type", "reason": "...", "source": "streams.validate",
     "origin": "fs/<t>/<d>/telemetry", "payload_sample": "<first 256 bytes, UTF-8 with \\xNN escapes>"}

One consumer group for every connector instance, starting at the end of the topic: a notice is published
once, and old refusals are not replayed to devices after a restart (the API keeps them).
"""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

from runtime.kafka import AUTO_COMMIT, KafkaLike, clients
from schemas import codec, topics
from schemas.namespace import device_topics

from .follow import follow_while_connected

GROUP = "fleetstream-downlink-mqtt-rejections"
SAMPLE_BYTES = 256


def notice(rec: dict) -> bytes:
    """The message a device receives about one dead letter."""
    raw = rec.get("raw") or b""
    return json.dumps({"time": rec["time"], "reason_code": rec["reason_code"], "reason": rec["reason"],
                       "source": rec["source"], "origin": rec.get("origin"),
                       "payload_sample": raw[:SAMPLE_BYTES].decode("utf-8", "backslashreplace")}).encode()


class RejectionNotifier:
    """Follows ``fleetstream.dlq`` and publishes through ``client`` (the downlink's session) while ``connected``.

    :param kafka: the process's Kafka clients.
    :param client: a connected paho client with a platform identity (may publish under any device)."""

    def __init__(self, kafka: KafkaLike, client: mqtt.Client, connected: threading.Event, stop: threading.Event,
                 *, group_id: str = GROUP):
        self.client, self.connected, self._stop = client, connected, stop
        self._consumer = clients(kafka).consumer(group_id, {**AUTO_COMMIT, "auto.offset.reset": "latest"})
        self._codec = codec("dead_letter")
        self.published = 0

    def run(self) -> None:
        follow_while_connected(self._consumer, topics.DEAD_LETTER.name, self.connected, self._stop,
                               lambda m: self._publish(self._codec.decode(m.value())), "mqtt rejection notifier")

    def _publish(self, rec: dict) -> None:
        tenant, device = rec.get("tenant_id"), rec.get("device_id")
        if not tenant or not device or "/" in tenant or "/" in device or "+" in device or "#" in device:
            return  # no device to tell (undecodable input), or a name that is no device topic
        topic = device_topics(tenant, device)["rejections"]
        self.client.publish(topic, notice(rec), qos=1)
        self.published += 1
