"""A JVM decoder fleetstream did not write reads what the platform wrote (adr/0143): Apache Kafka's Java
consumer with Apicurio Registry's ``AvroKafkaDeserializer`` (fetched by scripts/setup.sh), which reads the
Confluent header's schema id and fetches the writer schema from the registry by itself."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from fleetstream.stack.kafka import classpath
from schemas import codec, device_key, topics

CONSUMER = Path(__file__).parent / "java" / "ApicurioAvroConsumer.java"
SERDE = Path(os.environ.get("FLEETSTREAM_CACHE", Path.home() / ".cache" / "fleetstream")) / "apicurio-serde-1" / "lib"


@pytest.mark.timeout(1200)  # the stack, then a JVM compiling the consumer on a loaded machine
def test_apicurios_java_deserializer_reads_the_readings(infra, settings):
    assert SERDE.is_dir(), f"{SERDE} missing: run scripts/setup.sh"
    tenant = str(uuid.uuid4())
    ts = int(time.time() * 1000)
    sent = [{"tenant_id": tenant, "device_id": f"boiler-{i}", "event_time": ts + i, "receive_time": ts + i,
             "protocol": "mqtt", "values": {"temperature": 60.5 + i, "burner_on": i % 2 == 0, "mode": f"m{i}"},
             "device_type": "boiler", "tags": ["site-a"]} for i in range(3)]
    p = settings.kafka.producer()
    tc = codec("telemetry")
    for rec in sent:
        p.produce(topics.TELEMETRY.name, tc.encode(rec), device_key(tenant, rec["device_id"]))
    assert p.flush(60) == 0

    registry_v3 = settings.schema_registry_endpoint.removesuffix("/apis/ccompat/v7") + "/apis/registry/v3"
    # Kafka's own 4.4 clients first: the serde's POM brings an older kafka-clients, left out at fetch time
    r = subprocess.run(["java", "-cp", f"{classpath()}:{SERDE}/*", str(CONSUMER), settings.bootstrap_servers,
                        registry_v3, topics.TELEMETRY.name, tenant, str(len(sent)), "300"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    got = sorted((json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")),
                 key=lambda rec: rec["event_time"])
    assert got == sent
