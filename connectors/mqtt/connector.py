"""Bridge from the MQTT broker into Kafka.

Several instances split the load through one MQTT 5 shared subscription. A QoS1 message is
acknowledged to the broker only after Kafka confirmed every record made from it (paho manual ack), so a
connector that dies before that leaves the message with the broker, which delivers it again.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors import canonical
from connectors.base import BaseConnector, ConnectorHealth
from connectors.uplink import UplinkPublisher, now_ms

from .namespace import PREFIX, parse_topic

log = logging.getLogger(__name__)


@dataclass
class MqttSettings:
    host: str
    port: int
    ca_file: str
    cert_file: str
    key_file: str
    client_id: str = "fleetstream-connector-0"
    share_group: str = "fleetstream"
    session_expiry_s: int = 3600
    max_skew_ms: int = 300_000
    receive_maximum: int = 1000
    subscriptions: list[str] = field(default_factory=lambda: ["telemetry"])


class _AckAfterAll:
    """Acknowledges one MQTT message once all the Kafka writes made from it have succeeded."""

    __slots__ = ("pending", "failed", "ack", "lock")

    def __init__(self, pending: int, ack):
        self.pending, self.failed, self.ack, self.lock = pending, False, ack, threading.Lock()

    def __call__(self, err: Exception | None) -> None:
        with self.lock:
            if err is not None:
                self.failed = True
                log.error("kafka write failed; message left unacknowledged for redelivery: %s", err)
            self.pending -= 1
            if self.pending == 0 and not self.failed:
                self.ack()


class MqttConnector(BaseConnector):
    type_name = "mqtt"

    def __init__(self, uplink: UplinkPublisher, settings: MqttSettings):
        super().__init__(uplink)
        self.settings = settings
        self.connected = threading.Event()
        self.stats = {"messages": 0, "readings": 0, "rejected": 0}
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

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=30,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.uplink.flush()

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
        log.info("connected to %s:%s, subscribed %s", self.settings.host, self.settings.port, subs)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s", reason_code)

    def _on_message(self, client, _userdata, msg: mqtt.MQTTMessage) -> None:
        self.stats["messages"] += 1
        received = now_ms()
        ack = (lambda mid=msg.mid, qos=msg.qos: client.ack(mid, qos)) if msg.qos > 0 else (lambda: None)
        where = parse_topic(msg.topic)
        if where is None:  # the broker's ACLs make this a platform misconfiguration, not device input
            done = _AckAfterAll(1, ack)
            self.uplink.dead_letter(code="bad_topic", reason=f"topic {msg.topic!r} is outside fs/<tenant>/<device>/",
                                    raw=msg.payload, origin=msg.topic, done=done)
            return
        self.handle_telemetry(where.tenant_id, where.device_id, msg.payload, received, msg.topic, ack)

    def handle_telemetry(self, tenant_id: str, device_id: str, payload: bytes, received: int, origin: str,
                         ack) -> None:
        readings, rejected = canonical.parse(payload, received, self.settings.max_skew_ms)
        done = _AckAfterAll(len(readings) + len(rejected), ack)
        self.stats["readings"] += len(readings)
        self.stats["rejected"] += len(rejected)
        for r in readings:
            self.uplink.telemetry(tenant_id, device_id, r.event_time, r.values, received, done)
        for bad in rejected:
            self.uplink.dead_letter(code=bad.code, reason=bad.reason, raw=bad.raw, tenant_id=tenant_id,
                                    device_id=device_id, origin=origin, done=done)
