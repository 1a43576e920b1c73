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
import logging
import threading

import paho.mqtt.client as mqtt

from runtime.kafka import AUTO_COMMIT, KafkaLike, clients
from schemas import ValueDeserializationError, codec, topics
from schemas.namespace import device_topics

log = logging.getLogger(__name__)

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
        c = self._consumer
        c.subscribe([topics.DEAD_LETTER.name])
        try:
            while not self._stop.is_set():
                if not self.connected.wait(0.5):
                    continue
                for m in c.consume(200, 0.2):
                    if m.error() or m.value() is None:
                        continue
                    try:
                        rec = self._codec.decode(m.value())
                    except ValueDeserializationError as exc:
                        log.warning("rejections: skipping undecodable dead letter: %s", exc)
                        continue
                    self._publish(rec)
        except Exception:
            log.exception("mqtt rejection notifier stopped")
        finally:
            c.close()

    def _publish(self, rec: dict) -> None:
        tenant, device = rec.get("tenant_id"), rec.get("device_id")
        if not tenant or not device or "/" in tenant or "/" in device or "+" in device or "#" in device:
            return  # no device to tell (undecodable input), or a name that is no device topic
        topic = device_topics(tenant, device)["rejections"]
        self.client.publish(topic, notice(rec), qos=1)
        self.published += 1
