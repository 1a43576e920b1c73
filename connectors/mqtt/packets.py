"""The few MQTT 5 packets the connector's uplink subscriber and the load generator speak (OASIS MQTT 5.0, §3).

Only what a QoS ≤ 1 client needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH, PUBACK, PINGREQ/PINGRESP,
DISCONNECT. ``split`` cuts a byte stream into whole packets; everything is bytes in, bytes out, so both
the asyncio subscriber and the selector-driven generator use the same code and tests need no socket.
"""

from __future__ import annotations

import struct

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # normal disconnection: the session (and its unacknowledged messages) stays
_u16 = struct.Struct(">H")
_puback = struct.Struct(">BBH")


class MqttProtocolError(Exception):
    pass


def varint(n: int) -> bytes:
    """Variable byte integer (remaining length, property lengths)."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A variable byte integer at ``pos`` of a whole packet body: (value, position after it). Raises
    ``MqttProtocolError`` if it runs past the body or over four bytes (§1.5.5)."""
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 21:
            raise MqttProtocolError("malformed variable byte integer")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _u16.pack(len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def connect(client_id: str, *, keepalive: int, clean_start: bool, session_expiry_s: int = 0,
            receive_maximum: int | None = None) -> bytes:
    props = b""
    if session_expiry_s:
        props += b"\x11" + struct.pack(">I", session_expiry_s)
    if receive_maximum is not None:
        props += b"\x21" + _u16.pack(receive_maximum)
    flags = 0x02 if clean_start else 0x00  # no user name/password: the TLS client certificate is the identity
    return _packet(CONNECT << 4, _str("MQTT") + bytes((5, flags)) + _u16.pack(keepalive) + varint(len(props)) + props
                   + _str(client_id))


# Subscription options: Retain Handling 2 (bits 4-5), "send no retained messages at subscribe". A retained
# status (a Last Will) is history, not news; Mosquitto 2.0 sends retained messages to shared subscriptions too.
NO_RETAINED = 0x20


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = _u16.pack(packet_id) + b"\x00" + b"".join(_str(f) + bytes((qos | NO_RETAINED,)) for f, qos in filters)
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def publish_prefix(topic: str, qos: int) -> tuple[bytes, bytes]:
    """(first byte, topic + nothing) for building PUBLISH packets of one topic many times: see ``publish``."""
    return bytes(((PUBLISH << 4) | (qos << 1),)), _str(topic)


def publish(first: bytes, topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """A QoS1 PUBLISH from the pieces of ``publish_prefix``, with no properties."""
    body_len = len(topic) + 3 + len(payload)  # packet id (2) + property length (1, zero)
    return b"".join((first, varint(body_len), topic, _u16.pack(packet_id), b"\x00", payload))


def puback(packet_id: int) -> bytes:
    return _puback.pack(PUBACK << 4, 2, packet_id)  # reason "success" and no properties: omitted (§3.4.2.1)


def pubacks(packet_ids) -> bytes:
    pack = _puback.pack
    return b"".join([pack(0x40, 2, p) for p in packet_ids])


def split(buf: bytearray) -> tuple[list[tuple[int, int, bytes]], int]:
    """Whole packets at the start of ``buf`` as (type, flags, body) and how many bytes they used."""
    out = []
    pos, n = 0, len(buf)
    while n - pos >= 2:
        first = buf[pos]
        length, shift, i = 0, 0, pos + 1
        while True:
            if i >= n:
                return out, pos
            b = buf[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttProtocolError("malformed remaining length")
        end = i + length
        if end > n:
            break
        out.append((first >> 4, first & 0x0F, bytes(buf[i:end])))
        pos = end
    return out, pos


def parse_publish(flags: int, body: bytes) -> tuple[str, int, int, bytes, bool]:
    """(topic, qos, packet id (0 for QoS 0), payload, dup) of a PUBLISH body; ``MqttProtocolError`` if it is
    malformed. ``dup``: the broker sends this message again (a resumed session redelivering what was not
    acknowledged). Properties are skipped unread: the connector uses none of them (topic aliases are off
    because we never announce a Topic Alias Maximum)."""
    qos = (flags >> 1) & 0x03
    n = len(body)
    if qos == 3 or n < 2:
        raise MqttProtocolError("malformed PUBLISH")
    tlen = (body[0] << 8) | body[1]
    pos = 2 + tlen
    if pos + (3 if qos else 1) > n:  # room for the packet id (QoS > 0) and the property length
        raise MqttProtocolError("malformed PUBLISH: shorter than its topic")
    topic = body[2:pos].decode("utf-8", "replace")  # brokers refuse non-UTF-8 topics; never raise on one
    pid = 0
    if qos:
        pid = (body[pos] << 8) | body[pos + 1]
        pos += 2
    plen, pos = read_varint(body, pos)  # property length
    if pos + plen > n:
        raise MqttProtocolError("malformed PUBLISH: properties run past the packet")
    return topic, qos, pid, body[pos + plen:], bool(flags & 0x08)


def reason_of(body: bytes, at: int) -> int:
    """The reason code at ``at`` of an ack body (0: success when the byte is omitted)."""
    return body[at] if len(body) > at else 0
