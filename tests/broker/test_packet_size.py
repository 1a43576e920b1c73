"""Finding 4 of issue 19: the broker's maximum packet size comes from the connectors' payload limit
(``connectors.canonical.MAX_PAYLOAD_BYTES`` + PUBLISH overhead). A larger publish is refused by the broker
before its body is read (MQTT 5: DISCONNECT 0x95) and no other session notices; a publish at the payload
limit passes the broker (the connector gives it its verdict)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt

from connectors.mqtt import packets as p
from fleetstream.stack.mosquitto import MAX_PACKET_BYTES
from schemas.limits import MAX_PAYLOAD_BYTES

PACKET_TOO_LARGE = 0x95


def _topic(cn: str) -> str:
    return f"fs/{cn.replace('.', '/', 1)}/telemetry"


def test_the_broker_limit_follows_the_connectors_payload_limit():
    assert MAX_PAYLOAD_BYTES < MAX_PACKET_BYTES <= MAX_PAYLOAD_BYTES + 16 * 1024


def test_a_publish_over_the_limit_is_refused_and_other_sessions_are_unaffected(broker, sessions):
    bystander_dev, sender_dev = broker.device(), broker.device()
    connector = sessions(broker.platform("fleetstream-connector"), "fleetstream-connector-size")
    assert connector.connect() == 0 and connector.subscribe("$share/size/fs/+/+/telemetry") == [1]
    bystander = sessions(bystander_dev)
    assert bystander.connect() == 0

    sender = sessions(sender_dev)
    assert sender.connect() == 0
    assert sender.publish(_topic(sender_dev.cn), b"x" * MAX_PAYLOAD_BYTES) == 0  # at the payload limit: passes
    connector.wait(lambda: any(len(m.payload) == MAX_PAYLOAD_BYTES for m in connector.messages), what="the big one")

    # One byte of payload past what the broker reads. Raw MQTT 5 on a TLS socket: what the broker answers
    # must not depend on a client library's own checks.
    raw = socket.create_connection((broker.s.host, broker.s.mqtt_tls_port), timeout=30)
    tls = sender_dev.tls(broker.pki.ca_cert).wrap_socket(raw, server_hostname=broker.s.host)
    tls.sendall(p.connect(sender_dev.cn, keepalive=30, clean_start=True))
    assert _read_packet(tls)[0] >> 4 == 2  # CONNACK (this takes the sender's id over: same certificate)
    first, topic = p.publish_prefix(_topic(sender_dev.cn), qos=1)
    # Mosquitto counts the remaining length plus one byte of fixed header: this packet is one byte over. Only
    # its first bytes are sent: the broker decides on the declared length, before reading the body (and
    # closes the socket, so writing the rest would race with the close).
    packet = p.publish(first, topic, 1, b"x" * (MAX_PACKET_BYTES - len(topic) - 3))
    tls.sendall(packet[:1024])
    first, body = _read_packet(tls)
    assert first >> 4 == 14 and body[0] == PACKET_TOO_LARGE, (hex(first), body[:4])  # DISCONNECT 0x95
    tls.close()

    # nobody else noticed, and the bystander still publishes
    assert bystander.connected and not bystander.disconnects and connector.connected and not connector.disconnects
    assert bystander.publish(_topic(bystander_dev.cn), b'{"values": {"t": 2}}') == 0


def test_a_311_publish_over_the_limit_closes_only_that_connection(broker, sessions):
    dev, other = broker.device(), broker.device()
    o = sessions(other)
    assert o.connect() == 0
    s = sessions(dev, protocol=mqtt.MQTTv311)
    assert s.connect() == 0
    s.client.publish(_topic(dev.cn), b"x" * (MAX_PACKET_BYTES + 1), qos=1)
    s.wait(lambda: s.disconnects, what="the broker to close the oversized sender")
    assert o.connected and not o.disconnects
    assert o.publish(_topic(other.cn), b'{"values": {"t": 3}}') < 0x80  # 0x10 (no subscriber) is a success


def _read_packet(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    def read(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    first = read(1)[0]
    length, shift = 0, 0
    while True:
        b = read(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, read(length)


def test_the_production_broker_has_the_same_limit():
    """EMQX (helm/fleetstream/files/emqx-values.yaml) refuses what the local broker refuses."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    cfg = yaml.safe_load((root / "helm/fleetstream/files/emqx-values.yaml").read_text())["emqxConfig"]
    assert int(cfg["EMQX_MQTT__MAX_PACKET_SIZE"]) == MAX_PACKET_BYTES
    assert cfg["EMQX_ZONES__DEVICES__MQTT__PEER_CERT_AS_CLIENTID"] == "cn"  # client id = certificate (adr/0102)
    assert cfg["EMQX_LISTENERS__SSL__DEFAULT__ZONE"] == "devices"
