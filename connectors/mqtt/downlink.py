"""The MQTT side of commands and shadows (adr/0052, adr/0053, adr/0122), run inside the MQTT connector process.

Down (Kafka → devices): ``publish_command`` publishes a delivery attempt to ``fs/<t>/<d>/commands``; it is
``MqttConnector.deliver_command``, driven by the ``CommandRouter`` every protocol uses (which keeps only
fresh attempts whose protocol is MQTT or unset and writes the SENT ack). A consumer of
``fleetstream.shadows`` publishes a document flagged ``publish_delta`` to ``fs/<t>/<d>/shadow/delta``. Both
QoS 1 from this client (its own session, client id ``<connector>-downlink``); a command carries its
remaining time to live as the MQTT 5 message expiry. The shadow consumer starts from the earliest offset but
never sends a delta older than five minutes.

Up (devices → Kafka): ``fs/<t>/<d>/commands/ack`` becomes a ``CommandAck`` and
``fs/<t>/<d>/shadow/reported`` a REPORTED ``ShadowUpdate``. Tenant and device come from the topic (the
broker lets a device publish only under its own prefix); a payload that is not what the channel expects
goes to the dead-letter topic with a reason. A QoS 1 message is acknowledged to the broker only once Kafka
has the record.

Device payloads::

    fs/<t>/<d>/commands        {"command_id", "name", "params", "attempt", "expires_at"}
    fs/<t>/<d>/commands/ack    {"command_id", "status": "acknowledged"|"succeeded"|"failed", "result"?, "reason"?}
    fs/<t>/<d>/shadow/delta    {"version", "state": {key: desired value}, "timestamp"}
    fs/<t>/<d>/shadow/reported {"state": {key: value | null}}   (or the state object itself)
    fs/<t>/<d>/rejections      why input was refused (rejections.py, adr/0181)
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from runtime.kafka import AUTO_COMMIT, CONTROL_PRODUCER, KafkaLike, clients
from schemas import codec, device_key, topics
from schemas.namespace import PREFIX, device_topics, parse_topic

from ..base import CommandResult
from .follow import follow_while_connected
from .rejections import RejectionNotifier
from .settings import MqttSettings, subscription

log = logging.getLogger(__name__)

ACK_STATUSES = {"sent": "SENT", "acknowledged": "ACKNOWLEDGED", "succeeded": "SUCCEEDED", "failed": "FAILED"}
MAX_REPORT_BYTES = 64 * 1024
MAX_DELTA_AGE_MS = 300_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class BadPayload(ValueError):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def parse_ack(payload: bytes) -> tuple[str, str, str | None, str | None]:
    """(command_id, CommandAck status, result JSON, reason) from a device's ack payload."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("invalid_json", "command ack is not valid UTF-8 JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("command_id"), str) or not doc["command_id"]:
        raise BadPayload("invalid_ack", "command ack must be an object with a command_id string")
    status = ACK_STATUSES.get(str(doc.get("status", "acknowledged")).lower())
    if status is None:
        raise BadPayload("invalid_ack", f"status must be one of {', '.join(ACK_STATUSES)}")
    result = json.dumps(doc["result"]) if "result" in doc else None
    reason = str(doc["reason"])[:500] if doc.get("reason") is not None else None
    return doc["command_id"], status, result, reason


def parse_reported(payload: bytes) -> str:
    """The reported state as a JSON object string."""
    if len(payload) > MAX_REPORT_BYTES:
        raise BadPayload("too_large", f"a shadow report holds at most {MAX_REPORT_BYTES} bytes")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("invalid_json", "shadow report is not valid UTF-8 JSON") from None
    if isinstance(doc, dict) and isinstance(doc.get("state"), dict):
        doc = doc["state"]
    if not isinstance(doc, dict):
        raise BadPayload("invalid_report", "shadow report must be a JSON object (or {\"state\": {...}})")
    return json.dumps(doc, separators=(",", ":"))


def command_message(cmd: dict) -> bytes:
    return json.dumps({"command_id": cmd["command_id"], "name": cmd["name"], "params": json.loads(cmd["params_json"]),
                       "attempt": cmd["attempt"], "expires_at": cmd["expires_at"]}).encode()


def delta_message(doc: dict) -> bytes:
    return json.dumps({"version": doc["version"], "state": json.loads(doc["delta_json"]),
                       "timestamp": doc["time"]}).encode()


class MqttDownlink:
    """:param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param settings: the connector's broker address and identity (its client id gets a ``-downlink`` suffix).
    :param group_id: the shadow consumer's group, shared by every instance (each delta is published once)."""

    def __init__(self, kafka: KafkaLike, settings: MqttSettings, *,
                 group_id: str = "fleetstream-downlink-mqtt-shadows"):
        self.settings = settings
        self.stats = {"commands": 0, "deltas": 0, "acks": 0, "reports": 0, "rejected": 0}
        self._producer = clients(kafka).producer(CONTROL_PRODUCER, client_id="fleetstream-mqtt-downlink")
        self._consumer = clients(kafka).consumer(group_id, AUTO_COMMIT)
        self._codecs = {n: codec(n) for n in ("shadow_document", "command_ack", "shadow_update", "dead_letter")}
        self.connected = threading.Event()
        self._stop = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{settings.client_id}-downlink",
                        protocol=mqtt.MQTTv5, manual_ack=True)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
        c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *_a: self.connected.clear()
        c.on_message = self._on_message
        self.client = c
        self.rejections = RejectionNotifier(kafka, c, self.connected, self._stop)  # adr/0181
        self._threads = [threading.Thread(target=self._down, name="mqtt-downlink", daemon=True),
                         threading.Thread(target=self._poll, name="mqtt-downlink-producer", daemon=True),
                         threading.Thread(target=self.rejections.run, name="mqtt-rejections", daemon=True)]

    def start(self) -> MqttDownlink:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._producer.flush(10)
        self.client.disconnect()
        self.client.loop_stop()

    # -- devices → Kafka ------------------------------------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            log.error("broker refused the downlink: %s", reason_code)
            return
        group = f"{self.settings.share_group}-downlink" if self.settings.share_group else ""
        client.subscribe([(subscription(group, f"{PREFIX}/+/+/commands/ack"), 1),
                          (subscription(group, f"{PREFIX}/+/+/shadow/reported"), 1)])
        self.connected.set()

    def _on_message(self, client, _userdata, msg: mqtt.MQTTMessage) -> None:
        ack = (lambda mid=msg.mid, qos=msg.qos: client.ack(mid, qos)) if msg.qos > 0 else (lambda: None)
        where = parse_topic(msg.topic)
        if where is None:
            ack()
            return
        t, d = where.tenant_id, where.device_id
        try:
            if where.channel == "commands/ack":
                command_id, status, result, reason = parse_ack(msg.payload)
                rec = {"tenant_id": t, "device_id": d, "command_id": command_id, "status": status, "time": now_ms(),
                       "result_json": result, "reason": reason}
                self._send(topics.COMMAND_ACKS.name, device_key(t, d), self._codecs["command_ack"].encode(rec), ack)
                self.stats["acks"] += 1
            elif where.channel == "shadow/reported":
                rec = {"tenant_id": t, "device_id": d, "side": "REPORTED", "state_json": parse_reported(msg.payload),
                       "time": now_ms(), "expected_version": None, "request_id": None}
                self._send(topics.SHADOW_UPDATES.name, device_key(t, d), self._codecs["shadow_update"].encode(rec), ack)
                self.stats["reports"] += 1
            else:
                ack()
        except BadPayload as bad:
            self.stats["rejected"] += 1
            rec = {"tenant_id": t, "device_id": d, "source": "mqtt.downlink", "reason_code": bad.code,
                   "reason": bad.reason, "origin": msg.topic, "time": now_ms(), "raw": bytes(msg.payload)}
            self._send(topics.DEAD_LETTER.name, device_key(t, d), self._codecs["dead_letter"].encode(rec), ack)

    def _send(self, topic: str, key: bytes, value: bytes, ack) -> None:
        def delivered(err, _msg) -> None:
            if err is None:
                ack()
            else:  # left unacknowledged: the broker delivers it again
                log.error("kafka write to %s failed: %s", topic, err)

        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=delivered)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    # -- Kafka → devices ------------------------------------------------------------------------------
    def publish_command(self, cmd: dict) -> CommandResult:
        """QoS 1 with the remaining time to live as the message expiry; paho keeps it for a reconnect. SENT:
        the device answers on ``commands/ack`` (``_on_message``)."""
        props = Properties(PacketTypes.PUBLISH)
        if cmd["expires_at"] is not None:
            left_s = (cmd["expires_at"] - now_ms()) // 1000
            if left_s <= 0:  # the expiry interval counts whole seconds; the command agent records it expired
                return CommandResult.not_delivered("less than a second of its time to live left")
            props.MessageExpiryInterval = int(left_s)
        topic = device_topics(cmd["tenant_id"], cmd["device_id"])["commands"]
        info = self.client.publish(topic, command_message(cmd), qos=1, properties=props)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: queued for the reconnect
            return CommandResult.not_delivered(f"the MQTT client refused it: {mqtt.error_string(info.rc)}")
        self.stats["commands"] += 1
        return CommandResult.sent()

    def _down(self) -> None:
        shadow = self._codecs["shadow_document"]
        follow_while_connected(self._consumer, topics.SHADOWS.name, self.connected, self._stop,
                               lambda m: self._deliver_delta(shadow.decode(m.value()), now_ms() - m.timestamp()[1]),
                               "mqtt downlink consumer")

    def _deliver_delta(self, doc: dict, age_ms: int) -> None:
        if not doc["publish_delta"] or age_ms > MAX_DELTA_AGE_MS:
            return  # an old delta is re-sent anyway when the device next comes online
        topic = device_topics(doc["tenant_id"], doc["device_id"])["shadow_delta"]
        self.client.publish(topic, delta_message(doc), qos=1)
        self.stats["deltas"] += 1
