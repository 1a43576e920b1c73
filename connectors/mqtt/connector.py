"""Bridge from the MQTT broker into Kafka, for MQTT 5 and 3.1.1 devices alike (the broker translates).

Several instances split the load through one MQTT 5 shared subscription. A QoS1 message is
acknowledged to the broker only after Kafka confirmed every record made from it (paho manual ack), so a
connector that dies before that leaves the message in its broker session, and the broker delivers it
again when an instance with the same client id reconnects (adr/0042: Mosquitto does not hand a dead
member's in-flight messages to the other members of the share group).

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
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors import canonical
from connectors.base import Admission, ConnectorHealth, ListeningConnector, UplinkContext
from connectors.uplink import UplinkPublisher, now_ms

from .namespace import PREFIX, parse_topic
from .settings import MqttSettings

log = logging.getLogger(__name__)

__all__ = ["MqttConnector", "MqttSettings"]

STATUS_EVENTS = {"online": "ONLINE", "offline": "OFFLINE", "connected": "ONLINE", "disconnected": "OFFLINE"}


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
        self.connected = threading.Event()
        self.stats.update(status_events=0)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
        c.tls_set_context(ctx)
        c.max_inflight_messages_set(settings.receive_maximum)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c

    async def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        # clean_start False: unacknowledged messages of this client id survive a crash in its session
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=30,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    async def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        await asyncio.to_thread(self.uplink.flush)

    def health(self) -> ConnectorHealth:
        ok = self.connected.is_set()
        return ConnectorHealth(ok, "connected" if ok else "not connected to broker", dict(self.stats))

    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            log.error("broker refused connector: %s", reason_code)
            return
        subs = [(f"$share/{self.settings.share_group}/{PREFIX}/+/+/{ch}", 1) for ch in self.settings.subscriptions]
        client.subscribe(subs)
        self.connected.set()
        log.info("connected to %s:%s as %s, subscribed %s", self.settings.host, self.settings.port,
                 self.settings.client_id, subs)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s", reason_code)

    def _on_message(self, client, _userdata, msg: mqtt.MQTTMessage) -> None:
        received = now_ms()
        mid, qos = msg.mid, msg.qos

        def ack(err: Exception | None) -> None:
            if err is not None:  # no ack: the broker keeps the message in our session and delivers it again
                log.error("kafka write failed; %s left unacknowledged for redelivery: %s", msg.topic, err)
            elif qos > 0:
                client.ack(mid, qos)

        where = parse_topic(msg.topic)
        if where is None:  # the broker's ACLs make this a platform misconfiguration, not device input
            self.uplink.dead_letter(code="bad_topic", reason=f"topic {msg.topic!r} is outside fs/<tenant>/<device>/",
                                    raw=msg.payload, origin=msg.topic, done=ack)
            return
        if where.channel == "status":
            self.handle_status(where.tenant_id, where.device_id, msg.payload, msg.topic, ack)
        else:
            self.handle_telemetry(where.tenant_id, where.device_id, msg.payload, received, msg.topic, ack)

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
