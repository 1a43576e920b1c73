"""Poison messages over real MQTT (issue 19): payloads that once raised inside the connector (oversize, lone
surrogates, a 400-digit integer, ``ts`` Infinity/NaN, JSON nested 10,000 deep) are published by one tenant's
devices between another tenant's good readings, over MQTT 5 and 3.1.1, and the connector is killed (-9) and
replaced mid-stream. Every good reading is stored, every poison message is dead-lettered with a reason code,
and the connector stays up. A 100 MB PUBLISH, more than the broker may take, goes through the subscriber's
own parse path: it is dead-lettered with a truncated payload and its size, and the message behind it lands.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid

import paho.mqtt.client as mqtt

from connectors.mqtt import packets as p
from connectors.mqtt.connector import MqttConnector
from connectors.mqtt.settings import MqttSettings
from connectors.mqtt.subscriber import _Conn
from connectors.uplink import DLQ_MAX_RAW_BYTES, RAW_SIZE_HEADER, UplinkPublisher
from schemas import topics
from schemas.limits import MAX_PAYLOAD_BYTES
from schemas.namespace import device_topics
from tests.connectors.mqtt.support import Publisher, start_connector, stop_all, subscriptions
from tests.connectors.support import records
from tests.utils.factories import wait_for

GOOD = int(os.environ.get("FLEETSTREAM_POISON_GOOD", "2000"))  # good readings; the report's run used 12,000
POISON_EVERY = 20  # one poison message per this many good ones


def _nested(seq: int, depth: int) -> bytes:
    return b'[{"seq":%d},' % seq + b"[" * depth + b"]" * depth + b"]"


# name → (payload for a sequence number, the reason code it must be dead-lettered with); the sequence number
# is in every payload's first bytes, so the dead letter (even truncated) says which message it was
POISON = {
    # 1 KiB over the connectors' limit and under the broker's packet limit (MAX_PAYLOAD_BYTES + 8 KiB, adr/0101),
    # so the connector, not the broker, has to judge it; a 1 MB publish is refused by the broker itself
    # (tests/broker/test_packet_size.py) and never acknowledged, and the 100 MB case below takes the parse path
    "over the payload limit": (lambda i: b'{"seq":%d,"values":{"s":"' % i + b"x" * (MAX_PAYLOAD_BYTES + 1024)
                               + b'"}}', "oversize"),
    "lone surrogate value": (lambda i: b'{"seq":%d,"values":{"s":"\\ud800"}}' % i, "invalid_text"),
    "lone surrogate name": (lambda i: b'{"seq":%d,"values":{"\\udc00x":1}}' % i, "invalid_text"),
    "400-digit integer": (lambda i: b'{"seq":%d,"values":{"n":%s}}' % (i, b"9" * 400), "out_of_range"),
    "ts Infinity": (lambda i: b'{"seq":%d,"ts":Infinity,"values":{"n":1}}' % i, "bad_timestamp"),
    "ts NaN": (lambda i: b'{"seq":%d,"ts":NaN,"values":{"n":1}}' % i, "bad_timestamp"),
    "ts -Infinity": (lambda i: b'{"seq":%d,"ts":-Infinity,"values":{"n":1}}' % i, "bad_timestamp"),
    "array nested 10,000 deep": (lambda i: _nested(i, 10_000), "too_deep"),
    "object nested 10,000 deep": (lambda i: b'{"seq":%d,"values":' % i + b'{"a":' * 10_000 + b"1"
                                  + b"}" * 10_001, "too_deep"),
}
SEQ = re.compile(rb'"seq":(\d+)')


def test_poison_messages_are_dead_lettered_and_never_cost_another_tenants_readings(stack, factory, settings,
                                                                                     tmp_path):
    group = f"poison-{uuid.uuid4().hex[:8]}"
    cid = f"{group}-c"
    good_t, bad_t = factory.tenant("good"), factory.tenant("poison")
    pubs = {"good5": Publisher(factory, factory.device(good_t), mqtt.MQTTv5),
            "good311": Publisher(factory, factory.device(good_t), mqtt.MQTTv311),
            "bad5": Publisher(factory, factory.device(bad_t), mqtt.MQTTv5),
            "bad311": Publisher(factory, factory.device(bad_t), mqtt.MQTTv311)}
    procs = [start_connector(settings, tmp_path, cid, group)]
    kinds = list(POISON)
    poison_kind: dict[int, str] = {}
    try:
        wait_for(lambda: subscriptions(tmp_path, cid) >= 1, timeout=60, what="connector subscribed")
        now = int(time.time() * 1000)
        for i in range(GOOD):
            good = json.dumps({"ts": now + i, "values": {"seq": i}}).encode()
            pubs["good5" if i % 2 else "good311"].publish(i, good)
            if i % POISON_EVERY == 0:
                seq = GOOD + i
                kind = kinds[(i // POISON_EVERY) % len(kinds)]
                poison_kind[seq] = kind
                pubs["bad5" if (i // POISON_EVERY) % 2 else "bad311"].publish(seq, POISON[kind][0](seq))
            if i == GOOD // 2:  # mid-stream: the connector dies with messages in flight; another resumes
                assert procs[0].poll() is None, "the connector died on the poison before it was killed"
                os.killpg(procs[0].pid, signal.SIGKILL)
                procs[0].wait(10)
                procs.append(start_connector(settings, tmp_path, cid, group))
        wait_for(lambda: sum(len(pb.acked_seqs()) for pb in pubs.values()) == GOOD + len(poison_kind),
                 timeout=120, what="the broker acknowledged every publish")
        acked = pubs["good5"].acked_seqs() | pubs["good311"].acked_seqs()

        def ours(rec_headers) -> bool:
            return rec_headers.get("fs-instance") == cid.encode()

        def stored_seqs(got) -> set[int]:
            return {int(r["values"]["seq"]) for r, h in got if ours(h)}

        stored = stored_seqs(records(
            settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
            lambda r: r["tenant_id"] == good_t.tenant_id, headers=True, timeout=120,
            until=lambda got: stored_seqs(got) >= acked))
        print(f"\npoison run: {len(acked)} good readings acknowledged by the broker, {len(stored & acked)} "
              f"stored; {len(poison_kind)} poison messages")
        assert len(acked) == GOOD
        lost = sorted(acked - stored)
        assert not lost, f"{len(lost)} acknowledged readings lost, e.g. {lost[:10]}"

        def dead_seqs(got) -> dict[int, list[dict]]:
            by: dict[int, list[dict]] = {}
            for r, h in got:
                m = SEQ.search(r["raw"][:64])
                if ours(h) and m:
                    by.setdefault(int(m.group(1)), []).append(r)
            return by

        dead = dead_seqs(records(
            settings.bootstrap_servers, topics.DEAD_LETTER.name, lambda r: r["tenant_id"] == bad_t.tenant_id,
            headers=True, timeout=120, until=lambda got: set(dead_seqs(got)) >= set(poison_kind)))
        unanswered = sorted(set(poison_kind) - set(dead))
        assert not unanswered, f"poison without a dead letter: {unanswered}"
        for seq, kind in poison_kind.items():
            for r in dead[seq]:  # a redelivery after the kill may dead-letter one twice: each says the same
                assert r["reason_code"] == POISON[kind][1] and r["reason"], (kind, r["reason_code"],
                                                                             r["reason"])
                assert r["source"] == "mqtt" and len(r["raw"]) <= DLQ_MAX_RAW_BYTES
        assert procs[-1].poll() is None, "the replacement connector did not stay up"
    finally:
        for pb in pubs.values():
            pb.close()
        stop_all(procs)


class _Transport:
    """The socket end of the subscriber's connection: records what the connector writes to the broker."""

    def __init__(self):
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise AssertionError("the connector dropped its broker connection")


def test_a_publish_larger_than_the_broker_takes_is_dead_lettered_through_the_parse_path(stack, settings):
    """The subscriber's real parse path (stream → packets → batch → connector → Kafka) with a 100 MB PUBLISH
    arriving in 64 KiB reads, followed by a good message in the same stream."""
    size_mb = 100
    tenant, device = str(uuid.uuid4()), "big"
    instance = f"parse-{uuid.uuid4().hex[:8]}"
    uplink = UplinkPublisher(settings.bootstrap_servers, "mqtt", instance=instance)
    conn = MqttConnector(uplink, MqttSettings())
    topic = device_topics(tenant, device)["telemetry"]
    first, tbytes = p.publish_prefix(topic, 1)
    big = b'{"values":{"s":"' + b"x" * (size_mb << 20) + b'"}}'
    size = len(big)
    stream = p.publish(first, tbytes, 41, big) + p.publish(first, tbytes, 42, b'{"values":{"after":1}}')
    del big

    async def feed() -> bytes:
        sub = conn.subscriber
        sub._loop = asyncio.get_running_loop()
        c = _Conn(sub, sub.generation)
        c.transport = _Transport()
        sub._conn = c
        view = memoryview(stream)
        for at in range(0, len(view), 65536):
            c.data_received(bytes(view[at:at + 65536]))
        expected = p.pubacks([41, 42])
        deadline = time.monotonic() + 60
        while bytes(c.transport.written) != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the acknowledgements come after Kafka confirmed both records
        return bytes(c.transport.written)

    try:
        assert asyncio.run(feed()) == p.pubacks([41, 42])
    finally:
        uplink.close()
    (dead, headers), = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                               lambda r: r["tenant_id"] == tenant, headers=True)
    assert dead["reason_code"] == "oversize" and str(size) in dead["reason"]
    assert len(dead["raw"]) == DLQ_MAX_RAW_BYTES and dead["raw"].startswith(b'{"values":{"s":"xxx')
    assert int(headers[RAW_SIZE_HEADER]) == size
    assert headers["fs-instance"] == instance.encode()
    after = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name, lambda r: r["tenant_id"] == tenant)
    assert [r["values"] for r in after] == [{"after": 1.0}]
