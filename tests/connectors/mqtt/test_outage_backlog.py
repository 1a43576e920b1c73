"""A real Kafka outage under steady MQTT load (issue 19): the MQTT connector's Kafka is killed (-9) and
started again while devices keep publishing at half their rate limit. The broker queues their messages
while the connector can acknowledge nothing, then hands the backlog over at once. Rate limits apply to what
devices send, not to that backlog (adr/0104): no reading of a device within its limit is dead-lettered as
``rate_limited`` and none is lost, while a device that floods at ten times its limit is still limited.

The connector under test writes to a Kafka of this test's own, so the session's stack is not disturbed;
the broker and the devices' identities are the session's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, KafkaException, TopicPartition

from fleetstream.stack import kafka
from fleetstream.stack.process import Child, port_open
from runtime.settings import Settings
from schemas import topics
from tests.conftest import TEST_PORTS
from tests.connectors.mqtt.support import Publisher, start_connector, stop_all, subscriptions
from tests.connectors.support import records
from tests.utils.factories import wait_for
from tests.utils.kafka import records_to_end

RATE, BURST = 10, 20  # the connector's per-device limit, readings/s
DEVICE_RATE = 5  # what each well-behaved device sends, readings/s: half its limit
FLOOD_RATE = 100  # what the flooding device sends: ten times its limit
DEVICES = 10
# at least: Kafka is down this long (asserted on the measured outage). Long enough that each steady device's
# backlog (DEVICE_RATE * OUTAGE_S) is at least twice its BURST: handed over at once, it would be limited if the
# limiter counted it; a longer outage proves nothing more. Kafka is started again right after the kill: a node
# killed -9 cannot serve before its controller fenced the dead registration (broker.session.timeout.ms, 9 s,
# counted from the restarted controller's start), so the restart alone outlasts OUTAGE_S (adr/0175)
OUTAGE_S = 8
STEADY_BEFORE_S, STEADY_AFTER_S = 3, 5  # load before the kill and after the restart
assert DEVICE_RATE * OUTAGE_S >= 2 * BURST


class PrivateKafka:
    """A single-node Kafka of the test's own, in a temp dir, on ports beside the session's."""

    def __init__(self):
        port = TEST_PORTS["kafka_port"] + 50
        # two partitions per topic, not six: its start and its restart after the kill load, fence and elect every
        # partition it holds (adr/0202); the connector's writes and the test's reads are the same with two
        self.s = Settings(data_dir=Path(tempfile.mkdtemp(prefix="fleetstream-outage-")), kafka_port=port,
                          kafka_controller_port=port + 1, kafka_partitions=2)
        self.child: Child | None = None

    @property
    def bootstrap(self) -> str:
        return self.s.bootstrap_servers

    def start(self) -> None:
        self.child = kafka.kafka_child(self.s)
        self.child.start()
        self.child.wait_until(lambda: port_open(self.s.host, self.s.kafka_port)
                              and kafka.kafka_ready(self.bootstrap), 180, "private kafka metadata")
        kafka.ensure_topics(self.bootstrap, self.s.kafka_partitions)
        # after a restart the node answers metadata before it leads its partitions again (NOT_LEADER for
        # seconds at load ~50): back means every partition the test reads answers
        self.child.wait_until(self._serving, 180, "private kafka leading its partitions")

    def _serving(self) -> bool:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "outage-probe"})
        try:
            for topic in (topics.TELEMETRY_RAW.name, topics.DEAD_LETTER.name):
                for p in c.list_topics(topic, timeout=5).topics[topic].partitions:
                    c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            return True
        except KafkaException:
            return False
        finally:
            c.close()

    def kill(self) -> None:
        os.killpg(self.child.pid, signal.SIGKILL)
        self.child.proc.wait(10)

    def stop(self) -> None:
        if self.child is not None:  # killed: its data dir goes next, a clean stop would only wait (adr/0196)
            self.child.kill()
            self.child.stop()
        shutil.rmtree(self.s.data_dir, ignore_errors=True)


class Device(Publisher):
    """A device publishing ``{"values": {"seq": n}}`` readings stamped with its clock."""

    def __init__(self, factory, tenant, name: str):
        super().__init__(factory, factory.device(tenant, name), mqtt.MQTTv5, inflight=1000)
        self.seq = 0

    def send(self, n: int) -> None:
        for _ in range(n):
            reading = {"ts": int(time.time() * 1000), "values": {"seq": self.seq}}
            self.publish(self.seq, json.dumps(reading).encode())
            self.seq += 1


def _seq(rec: dict) -> int | None:
    try:
        return int(json.loads(rec["raw"])["values"]["seq"])
    except (ValueError, KeyError, TypeError):
        return None


def test_a_kafka_outage_backlog_is_not_rate_limited_and_nothing_is_lost(stack, factory, settings, tmp_path):
    private = PrivateKafka()
    group = f"outage-{uuid.uuid4().hex[:8]}"
    cid = f"{group}-c"
    procs = []
    tenant = factory.tenant("outage")
    devices = [Device(factory, tenant, f"steady-{i}") for i in range(DEVICES)]
    flooder = Device(factory, tenant, "flooder")
    warm = Device(factory, tenant, "warm-up")  # shows the pipeline flows before the load starts
    stop = threading.Event()
    try:
        private.start()
        procs.append(start_connector(settings, tmp_path, cid, group, kafka=private.bootstrap,
                                     rate_limit=f"{{per_second: {RATE}, burst: {BURST}}}"))
        wait_for(lambda: subscriptions(tmp_path, cid) >= 1, timeout=60, what="connector subscribed")
        # steady state first: a reading flows to the private Kafka (its new partitions have leaders) before the
        # load starts; readings sent in the seconds before that, then caught by the kill, went missing in 3 of
        # 6 runs after issue 13's merges (cause not found yet, see the issue-13 closing note)

        def flowing() -> bool:
            warm.send(1)
            try:
                return any(r and r["device_id"] == warm.device.device_id
                           for r in records_to_end(private.bootstrap, topics.TELEMETRY_RAW.name))
            except KafkaException:  # no partition leader yet
                return False

        wait_for(flowing, timeout=120, what="a reading through the connector into the private Kafka")

        def load() -> None:  # every device at its rate, in 0.1 s steps, until told to stop
            tick, n = time.monotonic(), 0
            while not stop.is_set():
                n += 1
                for d in devices:
                    d.send(1 if n % (10 // DEVICE_RATE) == 0 else 0)
                flooder.send(FLOOD_RATE // 10)
                tick += 0.1
                stop.wait(max(0.0, tick - time.monotonic()))

        loader = threading.Thread(target=load, name="outage-load", daemon=True)
        t_load = time.monotonic()
        loader.start()
        time.sleep(STEADY_BEFORE_S)  # steady state before the outage (load, not a wait for a condition)
        private.kill()
        t_down = time.monotonic()
        private.start()  # the outage itself: until the restarted node serves again
        outage = time.monotonic() - t_down
        assert outage >= OUTAGE_S, f"Kafka was back after {outage:.1f} s: too short an outage to prove anything"
        time.sleep(STEADY_AFTER_S)  # steady load after recovery
        stop.set()
        loader.join(10)
        loaded = time.monotonic() - t_load

        wait_for(lambda: all(len(d.acked_seqs()) == d.seq for d in devices), timeout=60,
                 what="the broker acknowledged every steady publish")
        acked = {d.device.device_id: d.acked_seqs() for d in devices}
        steady = set(acked)

        def account(raw, dead) -> dict[str, set[int]]:
            seen: dict[str, set[int]] = {}
            for r in raw:
                seen.setdefault(r["device_id"], set()).add(int(r["values"]["seq"]))
            for r in dead:
                if (seq := _seq(r)) is not None:
                    seen.setdefault(r["device_id"], set()).add(seq)
            return seen

        def mine(r) -> bool:
            return r["tenant_id"] == tenant.tenant_id and r["device_id"] in steady

        deadline = time.monotonic() + 180
        while True:  # until every acknowledged steady reading is stored or dead-lettered (or time is up)
            # to the end of each partition, however long decoding takes (a 5 s read missed records on a busy
            # machine and called them lost)
            raw = [r for r in records_to_end(private.bootstrap, topics.TELEMETRY_RAW.name) if r and mine(r)]
            dead = [r for r in records_to_end(private.bootstrap, topics.DEAD_LETTER.name) if r and mine(r)]
            seen = account(raw, dead)
            if all(acked[d] <= seen.get(d, set()) for d in steady) or time.monotonic() > deadline:
                break
        limited = [r for r in dead if r["reason_code"] == "rate_limited"]
        stored = {d: {int(r["values"]["seq"]) for r in raw if r["device_id"] == d} for d in steady}
        lost = sum(len(acked[d] - stored[d]) for d in steady)
        total = sum(len(a) for a in acked.values())
        print(f"\noutage run: Kafka down {outage:.0f} s; steady devices {total} acknowledged, "
              f"{total - lost} stored, {len(limited)} rate_limited")
        assert not limited, f"{len(limited)} readings of devices within their limit were rate_limited"
        missing = {d: sorted(acked[d] - stored[d]) for d in steady if acked[d] - stored[d]}
        reasons = {(r["device_id"], _seq(r)): r["reason_code"] for r in dead}
        assert lost == 0, (f"{lost} acknowledged readings not stored: "
                           f"{ {d: [(q, reasons.get((d, q), 'nowhere')) for q in qs] for d, qs in missing.items()} }")

        # The flooder is still limited: what it got in stays within its limit over the whole run, the outage's
        # credit included (RATE per second of load and again per second of stall, plus BURST: ratelimit.py; the
        # connector's stall lies within the load, so twice the load bounds both),
        # however much of its flood the broker dropped or delayed on a busy machine (a "more than half was
        # dead-lettered" check failed there), and some of the flood was refused as rate_limited
        flood_stored = sum(1 for r in records_to_end(private.bootstrap, topics.TELEMETRY_RAW.name)
                           if r and r["device_id"] == flooder.device.device_id)
        allowed = RATE * 2 * loaded + BURST
        flood_dead = records(private.bootstrap, topics.DEAD_LETTER.name,
                             lambda r: r["device_id"] == flooder.device.device_id, timeout=60,
                             until=lambda found: any(r["reason_code"] == "rate_limited" for r in found))
        flood_limited = sum(r["reason_code"] == "rate_limited" for r in flood_dead)
        print(f"flooder: {flooder.seq} sent, {flood_stored} stored (limit {allowed:.0f}), {flood_limited} rate_limited")
        assert flooder.seq > 2 * allowed, "the flooder must send well over its limit for this to prove anything"
        assert flood_stored <= allowed, "a device sending ten times its limit must still be limited"
        assert flood_limited > 0
    finally:
        stop.set()
        for d in [*devices, flooder, warm]:
            d.close()
        stop_all(procs)
        private.stop()
