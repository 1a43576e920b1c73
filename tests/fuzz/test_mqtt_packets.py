"""The MQTT packet code of the connector's subscriber under arbitrary bytes from the broker: it never raises
anything but ``MqttProtocolError`` (on which the subscriber closes the connection, §4.13), and whatever it
builds parses back to the same topic, packet id, payload and DUP flag however TCP cuts the stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.mqtt import packets as p

topics = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=80)


@given(st.binary(max_size=2048))
def test_split_takes_whole_packets_or_refuses_the_stream(data):
    try:
        packets, used = p.split(bytearray(data))
    except p.MqttProtocolError:
        return
    assert 0 <= used <= len(data)
    for kind, flags, body in packets:
        assert 0 <= kind <= 15 and 0 <= flags <= 15 and type(body) is bytes


@given(st.integers(min_value=0, max_value=15), st.binary(max_size=512))
def test_parse_publish_of_any_body_returns_a_message_or_refuses_it(flags, body):
    try:
        topic, qos, pid, payload, dup = p.parse_publish(flags, body)
    except p.MqttProtocolError:
        return
    assert type(topic) is str and qos in (0, 1, 2) and 0 <= pid <= 0xFFFF and type(payload) is bytes
    assert dup is bool(flags & 0x08) and len(payload) <= len(body)


@given(st.binary(max_size=6), st.integers(min_value=0, max_value=8))
def test_read_varint_of_any_bytes_returns_a_value_or_refuses_it(data, pos):
    try:
        value, after = p.read_varint(data, pos)
    except p.MqttProtocolError:
        return
    assert 0 <= value < 1 << 28 and pos < after <= min(len(data), pos + 4)


@given(st.integers(min_value=0, max_value=(1 << 28) - 1))
def test_varint_round_trip(n):
    b = p.varint(n)
    assert len(b) <= 4 and p.read_varint(b, 0) == (n, len(b))


@given(topics, st.integers(min_value=1, max_value=0xFFFF),
       st.lists(st.binary(max_size=300), min_size=1, max_size=5),
       st.lists(st.integers(min_value=1, max_value=2000), max_size=6), st.booleans())
def test_publishes_parse_back_however_the_stream_is_cut(topic, pid, payloads, cuts, dup):
    first, tbytes = p.publish_prefix(topic, 1)
    if dup:
        first = bytes((first[0] | 0x08,))
    stream = b"".join(p.publish(first, tbytes, pid, pl) for pl in payloads)
    buf, got, at = bytearray(), [], 0
    for cut in sorted({min(c, len(stream)) for c in cuts} | {len(stream)}):
        buf += stream[at:cut]
        at = cut
        packets, used = p.split(buf)
        del buf[:used]
        got += packets
    assert not buf
    assert [p.parse_publish(f, b) for _, f, b in got] == [(topic, 1, pid, pl, dup) for pl in payloads]
