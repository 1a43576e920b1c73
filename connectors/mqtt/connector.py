"""Bridge from the MQTT broker into Kafka, for MQTT 5 and 3.1.1 devices alike (the broker translates).

Several instances split the load through one MQTT 5 shared subscription. Messages arrive in bursts (every
PUBLISH of one TLS read, ``subscriber.py``) and are handled as one batch: parsed, admitted, encoded and
produced, then acknowledged together once Kafka confirmed every record of the batch (adr/0045). A
connector that dies before that leaves them in its broker session, and the broker delivers them again
when an instance with the same client id reconnects (adr/0042: Mosquitto does not hand a dead member's
in-flight messages to the other members of the share group).

Channels: ``telemetry`` (the canonical JSON payload) and ``status`` (``online``/``offline``, plain or
``{"state": …}``; a device sets its Last Will to ``offline`` on this topic), which becomes an ONLINE or
OFFLINE device event. Shared subscriptions never receive retained messages, so a retained status is
not replayed as a new event when a connector restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl

from connectors import canonical
from connectors.base import Admission, ConnectorHealth, ListeningConnector, UplinkContext
from connectors.uplink import Batch, UplinkPublisher, now_ms

from .namespace import PREFIX, DeviceTopic, parse_topic
from .settings import MqttSettings
from .subscriber import MqttSubscriber

log = logging.getLogger(__name__)

__all__ = ["MqttConnector", "MqttSettings"]

STATUS_EVENTS = {"online": "ONLINE", "offline": "OFFLINE", "connected": "ONLINE", "disconnected": "OFFLINE"}
_MAX_TOPICS = 100_000  # parsed-topic cache; cleared when full (a topic is a few hundred bytes)


def parse_status(payload: bytes) -> tuple[str, dict[str, str]] | None:
    """(event type, details) of a status payload, or None when it is not one."""
    text = payload.decode("utf-8", "replace").strip()
    details: dict[str, str] = {}
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        text = str(doc.get("state", ""))
        details = {k: str(v)[:200] for k, v in doc.items() if k != "state" and isinstance(v, (str, int, float))}
    event = STATUS_EVENTS.get(text.lower())
    return (event, details) if event else None


class MqttConnector(ListeningConnector):
    """:param settings: broker, identity, shared-subscription group and window.
    :param admission: registry and rate-limit checks (``require_registered`` off: the broker admitted
        the device by its certificate)."""

    type_name = "mqtt"

    def __init__(self, uplink: UplinkPublisher, settings: MqttSettings, admission: Admission | None = None):
        super().__init__(uplink, admission)
        self.settings = settings
        self.stats.update(status_events=0, batches=0)
        filters = [f"$share/{settings.share_group}/{PREFIX}/+/+/{ch}" for ch in settings.subscriptions]
        self.subscriber = MqttSubscriber(settings.host, settings.port, settings.client_id, None, filters,
                                         self._on_batch, session_expiry_s=settings.session_expiry_s,
                                         receive_maximum=settings.receive_maximum)
        self.connected = self.subscriber.connected
        self._topics: dict[str, DeviceTopic | None] = {}

    async def start(self) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.settings.ca_file)
        ctx.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        self.subscriber.ssl = ctx
        self.subscriber.start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    async def stop(self) -> None:
        # stop taking messages, let Kafka confirm what was taken, acknowledge it, then disconnect: a
        # message confirmed after the DISCONNECT would be delivered again (a duplicate, not a loss)
        self.subscriber.pause()
        await asyncio.to_thread(self.uplink.flush)
        await self.subscriber.stop()

    def health(self) -> ConnectorHealth:
        ok = self.connected.is_set()
        return ConnectorHealth(ok, "connected" if ok else "not connected to broker", dict(self.stats))

    def _topic(self, topic: str) -> DeviceTopic | None:
        if len(self._topics) >= _MAX_TOPICS:
            self._topics.clear()
        where = self._topics[topic] = parse_topic(topic)
        return where

    def _on_batch(self, generation: int, msgs: list[tuple[str, int, int, bytes]]) -> None:
        """Every PUBLISH of one read: records for all of them, then one acknowledgement write once Kafka
        confirmed the lot. A Kafka error leaves the whole batch unacknowledged for redelivery."""
        received = now_ms()
        acks = [pid for _, qos, pid, _ in msgs if qos]

        def confirmed(err: Exception | None) -> None:
            if err is not None:  # no ack: the broker keeps the messages in our session and delivers them again
                log.error("kafka write failed; %d messages left unacknowledged for redelivery: %s", len(acks), err)
            else:
                self.subscriber.ack(generation, acks)

        batch = Batch(confirmed, self.type_name)
        self.stats["batches"] += 1
        topics, skew = self._topics, self.settings.max_skew_ms
        for topic, _qos, _pid, payload in msgs:
            where = topics.get(topic) or self._topic(topic)
            if where is None:  # the broker's ACLs make this a platform misconfiguration, not device input
                self.uplink.dead_letter(code="bad_topic", reason=f"topic {topic!r} is outside fs/<tenant>/<device>/",
                                        raw=payload, origin=topic, done=batch)
            elif where.channel == "status":
                self.handle_status(where.tenant_id, where.device_id, payload, topic, batch)
            else:
                readings, rejected = canonical.parse(payload, received, skew)
                self.publish_uplink(UplinkContext(where.tenant_id, where.device_id, topic, received), payload,
                                    readings, rejected, batch)
        batch.seal()

    def handle_telemetry(self, tenant_id: str, device_id: str, payload: bytes, received: int, origin: str,
                         done) -> None:
        readings, rejected = canonical.parse(payload, received, self.settings.max_skew_ms)
        self.publish_uplink(UplinkContext(tenant_id, device_id, origin, received), payload, readings, rejected, done)

    def handle_status(self, tenant_id: str, device_id: str, payload: bytes, origin: str, done) -> None:
        parsed = parse_status(payload)
        if parsed is None:
            self.uplink.dead_letter(code="invalid_status", reason="status must be online/offline, plain or "
                                    '{"state": "online"|"offline"}', raw=payload, tenant_id=tenant_id,
                                    device_id=device_id, origin=origin, done=done)
            return
        event, details = parsed
        self.stats["status_events"] += 1
        self.uplink.device_event(tenant_id, device_id, event, reason="device status message",
                                 details={**details, "topic": origin}, done=done)
