"""The connector's MQTT 5 subscriber against a scripted broker (plain TCP, no TLS): it resumes its session
(clean start off, session expiry, receive maximum), hands a burst of PUBLISH packets over as one batch,
acknowledges a confirmed batch in one write, reconnects when the broker drops it, and never sends an
acknowledgement on a connection the message did not arrive on."""

from __future__ import annotations

import asyncio

from connectors.mqtt import packets as p
from connectors.mqtt.subscriber import MqttSubscriber


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    buf = bytearray()
    while True:
        packets, used = p.split(buf)
        if packets:
            assert used == len(buf)
            return packets[0]
        buf += await reader.read(1)


def test_session_batch_acks_and_reconnect():
    async def scenario():
        connections: asyncio.Queue = asyncio.Queue()

        async def handle(reader, writer):
            await connections.put((reader, writer))

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        batches: list[tuple[int, list]] = []
        sub = MqttSubscriber("127.0.0.1", port, "conn-0", None, ["$share/g/fs/+/+/telemetry"],
                             lambda gen, msgs: batches.append((gen, msgs)), session_expiry_s=3600,
                             receive_maximum=500, keepalive=30)
        sub.start()

        async def accept_session(present: int):
            reader, writer = await asyncio.wait_for(connections.get(), 10)
            kind, _, body = await _read_packet(reader)
            assert kind == p.CONNECT
            assert body[7] == 0x00  # connect flags: clean start off, no credentials
            assert b"\x11\x00\x00\x0e\x10" in body and b"\x21\x01\xf4" in body  # expiry 3600, receive max 500
            assert body.endswith(b"\x00\x06conn-0")
            writer.write(bytes((0x20, 3, present, 0, 0)))  # CONNACK
            kind, _, body = await _read_packet(reader)
            assert kind == p.SUBSCRIBE and body.endswith(b"$share/g/fs/+/+/telemetry\x21")  # QoS 1, no retained
            writer.write(bytes((0x90, 4)) + body[:2] + b"\x00\x01")  # SUBACK: granted QoS 1
            return reader, writer

        reader, writer = await accept_session(0)
        first, topic = p.publish_prefix("fs/t/d/telemetry", 1)
        writer.write(b"".join(p.publish(first, topic, i, b"m%d" % i) for i in (11, 12, 13)))
        while not batches:
            await asyncio.sleep(0.01)
        (gen, msgs), = batches
        assert [(m[2], m[3]) for m in msgs] == [(11, b"m11"), (12, b"m12"), (13, b"m13")]
        assert sub.connected.is_set()

        await asyncio.to_thread(sub.ack, gen, [11, 12])  # from another thread, as the Kafka poller does
        sub.ack(gen, [13])
        got = b""
        while len(got) < 12:
            got += await asyncio.wait_for(reader.read(100), 5)
        assert got == p.pubacks([11, 12, 13])

        writer.close()  # the broker drops the connector
        reader2, writer2 = await accept_session(1)  # it comes back and resumes its session
        assert sub.connected.is_set() or await asyncio.to_thread(sub.connected.wait, 5)
        sub.ack(gen, [14])  # confirmed after the reconnect: the resumed session redelivers it instead
        writer2.write(p.publish(first, topic, 14, b"m14"))
        while len(batches) < 2:
            await asyncio.sleep(0.01)
        gen2 = batches[1][0]
        assert gen2 != gen
        sub.ack(gen2, [14])
        data = await asyncio.wait_for(reader2.read(100), 5)
        assert data == p.puback(14)  # only the new connection's acknowledgement, once

        await sub.stop()
        assert await asyncio.wait_for(reader2.read(100), 5) == p.DISCONNECT_PACKET
        server.close()

    asyncio.run(scenario())
