"""A record keyed ``tenant:device`` lands on the same partition whoever writes it (adr/0141): Apache Kafka's
own Java producer with its default partitioner, our confluent-kafka producers from the factory, the Faust
worker's aiokafka partitioner and ``schemas.partitioner.partition_for`` all agree."""

from __future__ import annotations

import random
import subprocess
import uuid
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from fleetstream.stack.kafka import KAFKA_VERSION, classpath
from runtime.kafka import CONTROL_PRODUCER, UPLINK_PRODUCER
from schemas.keys import device_key
from schemas.partitioner import murmur2, murmur2_partitioner, partition_for

JAVA_PRODUCER = Path(__file__).parent / "java" / "KeyedProducer.java"
# a JVM that lives for seconds, most of them compiling the source file: C1 only and a serial heap, as the
# storage tool runs (half the CPU of the defaults; the partitioner computes the same whichever JIT runs it)
JAVA = ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


def _client_classpath() -> str:
    """Kafka's client jar and its logging API: all the producer loads without compression, and all the
    compiler needs to read (the broker's ~45 jars cost it ~1 s of CPU more)."""
    lib = Path(classpath().removesuffix("/*"))  # classpath() checks that the jars are there
    return ":".join(str(p) for p in (lib / f"kafka-clients-{KAFKA_VERSION}.jar", *lib.glob("slf4j-api-*.jar")))


def _keys(n: int) -> list[str]:
    rnd = random.Random(14)
    tenants = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(5)]
    # device ids of every length modulo 4 (murmur2 handles the tail bytes apart)
    return [device_key(rnd.choice(tenants), f"dev-{'x' * (i % 7)}{i}").decode() for i in range(n)]


def test_murmur2_is_kafkas():
    # Utils.murmur2 values from Apache Kafka's UtilsTest (read unsigned)
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0xFFFFFFFF == (-985981536) & 0xFFFFFFFF
    assert murmur2(b"abc") == 479470107
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") & 0xFFFFFFFF == (-58897971) & 0xFFFFFFFF


def test_faust_and_aiokafka_agree_with_partition_for():
    aiokafka_default = DefaultPartitioner()
    parts = list(range(6))
    for key in [k.encode() for k in _keys(500)] + ["tenant:gerät-ü".encode(), b"", b"a"]:
        expected = partition_for(key, 6)
        assert aiokafka_default(key, parts, parts) == expected
        assert murmur2_partitioner(key, parts, parts) == expected


@pytest.mark.timeout(1200)  # a loaded machine: the stack, then a JVM compiling the producer
def test_java_producer_and_ours_pick_the_same_partition(infra, settings):
    from confluent_kafka.admin import NewTopic

    kafka = settings.kafka
    counts = {f"contract.partitioning.{uuid.uuid4().hex[:8]}.{n}": n for n in (6, 13)}
    admin = kafka.admin()
    for f in admin.create_topics([NewTopic(t, n, 1) for t, n in counts.items()]).values():
        f.result(timeout=60)
    keys = _keys(60)

    java = subprocess.run([*JAVA, "-cp", _client_classpath(), str(JAVA_PRODUCER), settings.bootstrap_servers,
                           ",".join(counts), *keys], capture_output=True, text=True, timeout=600)
    assert java.returncode == 0, java.stderr[-3000:]
    by_java = {(t, k): int(p) for t, p, k in (line.split(" ", 2) for line in java.stdout.splitlines())}
    assert len(by_java) == len(keys) * len(counts)

    ours: dict[tuple[str, str], int] = {}
    for profile in (UPLINK_PRODUCER, CONTROL_PRODUCER):
        producer = kafka.producer(profile)

        def done(err, msg):
            assert err is None, err
            ours[(msg.topic(), msg.key().decode())] = msg.partition()

        for topic in counts:
            for key in keys:
                producer.produce(topic, b"python", key.encode(), on_delivery=done)
        assert producer.flush(60) == 0
        assert ours == by_java

    # the rule is not trivially "everything on one partition", and our Python rule is the same one
    assert len({p for (t, _), p in by_java.items() if counts[t] == 13}) > 6
    assert all(partition_for(k.encode(), counts[t]) == p for (t, k), p in by_java.items())
