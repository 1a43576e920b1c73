"""Kafka values in the Confluent wire format with a real Schema Registry (the session's Apicurio, adr/0140):
every topic's subject holds the repo's schema under BACKWARD, an incompatible change is refused, every
current ``.avsc`` is compatible with what the registry holds and with the base branch's, and a device's
reading decodes with decoders fleetstream did not write: confluent-kafka's ``AvroDeserializer`` and
ClickHouse's ``AvroConfluent`` format (through chdb)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from runtime import schema_registry
from runtime.schema_registry import (
    HANDED_IDS_ENV,
    IncompatibleSchema,
    SchemaRegistry,
    check_all,
    handed_ids,
    register_all,
)
from schemas import codec, topics, wire
from schemas.codec import SCHEMA_FILES, bound_ids, current_binding, load_schema, restore_binding
from schemas.namespace import device_topics
from schemas.subjects import SUBJECTS, registered_text, schema_text, value_subject
from tests.utils.factories import publish_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry(infra, settings):
    reg = SchemaRegistry.from_settings(settings)
    yield reg
    reg.close()


def _telemetry_changed(**field) -> str:
    s = load_schema("telemetry")
    s["fields"].append(field)
    return json.dumps(s)


def test_every_topic_subject_is_backward_and_holds_the_repos_schema_under_the_bound_id(registry):
    ids = bound_ids()
    assert set(ids) == set(SCHEMA_FILES) and len(set(ids.values())) == len(ids)
    assert set(SUBJECTS) == {value_subject(t.name) for t in topics.ALL}  # every topic is Avro, rules included
    for subject, record in SUBJECTS.items():
        assert registry.compatibility(subject) == "BACKWARD", subject
        assert registry.register(subject, registered_text(record)) == ids[record], subject  # idempotent
        assert registry.schema(ids[record]) == load_schema(record)
    assert codec("alert").header == wire.header(ids["alert"])


def test_an_incompatible_change_to_an_avsc_is_refused_and_the_process_does_not_start(registry, monkeypatch):
    subject = value_subject(topics.TELEMETRY.name)
    versions = registry._call("GET", f"/subjects/{subject}/versions").json()
    breaking = _telemetry_changed(name="firmware", type="string")  # a new field without a default
    r = registry._call("POST", f"/subjects/{subject}/versions", {"schemaType": "AVRO", "schema": breaking})
    assert r.status_code == 409
    assert not registry.compatible(subject, breaking)
    # what start-up does when someone edits telemetry.avsc that way
    monkeypatch.setattr(schema_registry, "registered_text",
                        lambda record: breaking if record == "telemetry" else registered_text(record))
    with pytest.raises(IncompatibleSchema, match=r"fleetstream\.telemetry[.a-z]*-value: .*Incompatible"):
        register_all(registry)
    verdicts = check_all(registry)  # what `fleetstream schemas check` prints, and exits 1 on
    assert {k for k, v in verdicts.items() if v == "incompatible"} == {
        value_subject(topics.TELEMETRY_RAW.name), value_subject(topics.TELEMETRY.name)}
    assert registry._call("GET", f"/subjects/{subject}/versions").json() == versions  # nothing registered
    # the same change with a default is a new version: the rule refuses, it does not freeze
    assert registry.compatible(subject, _telemetry_changed(name="firmware", type="string", default=""))


def test_a_process_the_supervisor_started_binds_the_handed_ids_unless_they_are_for_other_schemas(
        registry, settings, monkeypatch):
    """adr/0174: ids handed for this registry and these schemas are bound without a call to the registry (it
    is unreachable here); handed for another registry or for schemas edited since, the process registers."""
    ids, session = bound_ids(), current_binding()
    fake = {record: sid + 1000 for record, sid in ids.items()}
    unreachable = settings.model_copy(update={"schema_registry_url": "http://127.0.0.1:9/apis/ccompat/v7"})
    try:
        monkeypatch.setenv(HANDED_IDS_ENV, handed_ids(unreachable, fake)[HANDED_IDS_ENV])
        assert schema_registry.bind(unreachable, wait_s=1) == fake == bound_ids()
        assert schema_registry.bind(settings) == ids  # handed for another registry: registers at its own
        stale = json.loads(handed_ids(settings, fake)[HANDED_IDS_ENV]) | {"schemas": "an older checkout"}
        monkeypatch.setenv(HANDED_IDS_ENV, json.dumps(stale))
        assert schema_registry.bind(settings) == ids == bound_ids()
    finally:
        restore_binding(session)


def _base_schemas() -> dict[str, dict] | None:
    """Each .avsc as the base branch has it (where this branch's changes will land), if git knows one."""
    try:
        base = subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    out = {}
    for record, filename in SCHEMA_FILES.items():
        r = subprocess.run(["git", "show", f"{base}:schemas/avro/{filename}"], cwd=ROOT, capture_output=True, text=True)
        if r.returncode == 0:  # a new record has no base version
            out[record] = json.loads(r.stdout)
    return out


def test_every_current_avsc_is_compatible_with_the_registry_and_the_base_branch(registry, settings):
    """The CI check: a schema change the registry would refuse fails here, before it reaches a deployment.
    (Against a production registry: `fleetstream schemas check` with its URL.)"""
    assert set(check_all(registry).values()) == {"compatible"}
    env = {**os.environ, "FLEETSTREAM_SCHEMA_REGISTRY_PORT": str(settings.schema_registry_port)}
    cli = subprocess.run([sys.executable, "-m", "fleetstream.cli", "schemas", "check"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and cli.stdout.count("compatible ") == len(SUBJECTS), cli.stdout + cli.stderr
    base = _base_schemas()
    if base is None:
        pytest.skip("no git history with a main branch to compare against")
    run = uuid.uuid4().hex[:8]
    refused = []
    for record, schema in base.items():
        subject = f"ci-check-{run}.{record}-value"
        registry.set_compatibility(subject, "BACKWARD")
        registry.register(subject, schema_text(schema))
        if not registry.compatible(subject, registered_text(record)):
            refused.append(record)
    assert not refused, f"not BACKWARD compatible with the base branch: {refused}"


# -- decoders nobody here wrote ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def device_readings(stack, factory, settings):
    """Three readings one MQTT device sent, as the raw Kafka values of ``fleetstream.telemetry``."""
    t = factory.tenant("sr")
    dev = factory.device(t)
    client = factory.mqtt_client(dev)
    ts = int(time.time() * 1000)
    sent = [{"ts": ts + i, "values": {"temperature": 20.5 + i, "door_open": i == 1, "mode": f"m{i}"}}
            for i in range(3)]
    publish_json(client, device_topics(t.tenant_id, dev.device_id)["telemetry"], sent)
    client.disconnect()
    values = _raw_values(settings.bootstrap_servers, topics.TELEMETRY.name,
                         lambda v: wire.peek_string(v, 1) == dev.device_id, count=3)
    return t.tenant_id, dev.device_id, sent, values


def _raw_values(bootstrap: str, topic: str, match, count: int, timeout: float = 60) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, -2) for p in md.partitions])
        found, deadline = [], time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error() and m.value() and match(m.value()):
                found.append(m.value())
        assert len(found) == count, f"{len(found)} of {count} records on {topic}"
        return found
    finally:
        c.close()


def test_confluent_kafkas_avro_deserializer_reads_what_a_device_sent(device_readings, settings):
    tenant, device, sent, values = device_readings
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": settings.schema_registry_endpoint}))
    ctx = SerializationContext(topics.TELEMETRY.name, MessageField.VALUE)
    got = sorted((deserialize(v, ctx) for v in values), key=lambda r: r["event_time"])
    assert [(r["tenant_id"], r["device_id"], r["protocol"]) for r in got] == [(tenant, device, "mqtt")] * 3
    assert [int(r["event_time"].timestamp() * 1000) for r in got] == [s["ts"] for s in sent]  # timestamp-millis
    assert [r["values"] for r in got] == [s["values"] for s in sent]


def test_clickhouse_avroconfluent_reads_what_a_device_sent(device_readings, settings, tmp_path):
    tenant, device, sent, values = device_readings
    path = tmp_path / "telemetry.bin"
    path.write_bytes(b"".join(values))  # Kafka values back to back: what the Kafka engine hands the format
    sql = (f"SELECT tenant_id, device_id, toUnixTimestamp64Milli(event_time) AS ts, "
           f"CAST(`values`, 'Map(String, String)') AS v FROM file('{path}', 'AvroConfluent') ORDER BY ts "
           f"SETTINGS format_avro_schema_registry_url='{settings.schema_registry_endpoint}'")
    # its own process: chdb allows one session per process, and the gateway's tests may hold this one's
    r = subprocess.run([sys.executable, "-c", "import chdb, sys; print(chdb.query(sys.argv[1], 'JSONEachRow'))", sql],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [(row["tenant_id"], row["device_id"], int(row["ts"])) for row in rows] == \
        [(tenant, device, s["ts"]) for s in sent]
    assert [row["v"]["temperature"] for row in rows] == [str(s["values"]["temperature"]) for s in sent]
