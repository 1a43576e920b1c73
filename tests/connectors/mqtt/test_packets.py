"""The MQTT 5 packets of the connector's subscriber and the load generator, checked against paho's own
encoder/decoder, and a byte stream cut into packets wherever TCP happens to split it."""

from __future__ import annotations

import struct

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.mqtt import packets as p


def _paho_publish(topic: str, pid: int, payload: bytes, props: Properties | None = None) -> bytes:
    """A QoS1 PUBLISH as paho 2 writes it (Client._send_publish's layout)."""
    t = topic.encode()
    pb = props.pack() if props is not None else b"\x00"
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", pid) + pb + payload
    return bytes((0x32,)) + p.varint(len(body)) + body


def test_publish_matches_paho_layout_and_parses_back():
    first, topic = p.publish_prefix("fs/t/d/telemetry", 1)
    pkt = p.publish(first, topic, 513, b'{"values":{"a":1}}')
    assert pkt == _paho_publish("fs/t/d/telemetry", 513, b'{"values":{"a":1}}')
    (kind, flags, body), = p.split(bytearray(pkt))[0]
    assert kind == p.PUBLISH
    assert p.parse_publish(flags, body) == ("fs/t/d/telemetry", 1, 513, b'{"values":{"a":1}}', False)


def test_properties_are_skipped_and_qos0_has_no_packet_id():
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 30
    props.UserProperty = [("k", "v" * 200)]  # property length needs two varint bytes
    pkt = _paho_publish("fs/t/d/status", 7, b"online", props)
    (kind, flags, body), = p.split(bytearray(pkt))[0]
    assert p.parse_publish(flags, body) == ("fs/t/d/status", 1, 7, b"online", False)
    assert p.parse_publish(flags | 0x08, body)[4] is True  # DUP: the broker redelivers it
    qos0 = bytes((0x30,)) + p.varint(2 + 3 + 1 + 2) + b"\x00\x03a/b\x00hi"
    (kind, flags, body), = p.split(bytearray(qos0))[0]
    assert p.parse_publish(flags, body) == ("a/b", 0, 0, b"hi", False)


def test_a_stream_split_anywhere_yields_the_same_packets():
    first, topic = p.publish_prefix("fs/t/d/telemetry", 1)
    big = b"x" * 20_000  # remaining length needs three varint bytes
    stream = b"".join([p.publish(first, topic, i, big if i == 3 else b"%d" % i) for i in range(1, 6)]) + \
        p.puback(9) + p.PINGREQ_PACKET
    for cut in (1, 2, 3, 7, 100, 20_010, 20_050, len(stream) - 1):
        buf, got = bytearray(), []
        for chunk in (stream[:cut], stream[cut:]):
            buf += chunk
            packets, used = p.split(buf)
            del buf[:used]
            got += packets
        assert not buf
        assert [k for k, _, _ in got] == [p.PUBLISH] * 5 + [p.PUBACK, p.PINGREQ]
        assert p.parse_publish(got[2][1], got[2][2])[3] == big


def test_acks_connect_and_subscribe_bytes():
    assert p.puback(0x0102) == b"\x40\x02\x01\x02"
    assert p.pubacks([1, 2]) == b"\x40\x02\x00\x01\x40\x02\x00\x02"
    c = p.connect("cid", keepalive=30, clean_start=False, session_expiry_s=3600, receive_maximum=1000)
    # CONNECT, MQTT v5, flags 0 (clean start off), keepalive 30, session expiry 3600, receive maximum 1000
    assert c == b"\x10" + p.varint(len(c) - 2) + b"\x00\x04MQTT\x05\x00\x00\x1e\x08\x11\x00\x00\x0e\x10\x21\x03\xe8" \
        b"\x00\x03cid"
    s = p.subscribe(1, [("$share/g/fs/+/+/telemetry", 1)])
    assert s[0] == 0x82 and s.endswith(b"$share/g/fs/+/+/telemetry\x21")  # QoS 1 | Retain Handling 2 (no retained)
