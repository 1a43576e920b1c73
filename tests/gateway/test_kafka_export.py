"""A tenant's continuous Kafka export (adr/0146) on the real stack: switched on through the API, the topic exists at
once and every validated reading of the tenant's devices reaches ``fleetstream.export.<tenant>`` with the key and
the Confluent-framed Avro value of ``fleetstream.telemetry`` (read back with confluent-kafka's
``AvroDeserializer`` against the registry), in the partition the telemetry topic has it in; a tenant that did
not switch it on gets no topic and no records; switching off stops the copy; each tenant's token changes only
its own switch; the switch is audited. Tenant credentials reading it over SASL: tests/cluster."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import codec, device_key, topics, wire
from schemas.namespace import device_topics
from schemas.partitioner import partition_for
from tests.gateway.helpers import bearer
from tests.utils.factories import publish_json, wait_for


def _topic_exists(bootstrap: str, topic: str) -> bool:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10).topics[topic]
    return md.error is None or md.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART


def _read_all(bootstrap: str, topic: str) -> list:
    """Every record the topic holds now (to its high watermarks)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-export-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out, left = [], {p: e for p, e in ends.items() if e > 0}
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append(m)
            if m.offset() + 1 >= left.get(m.partition(), 0):
                left.pop(m.partition(), None)
        assert not left, f"{topic}: partitions {sorted(left)} not read to their ends"
        return out
    finally:
        c.close()


class _Device:
    """One MQTT device of a tenant; each reading carries a number of its own in ``seq``."""

    def __init__(self, factory, tenant):
        self.tenant, self.dev = tenant, factory.device(tenant)
        self.client = factory.mqtt_client(self.dev)
        self.seq = 0

    def send(self) -> int:
        self.seq += 1
        publish_json(self.client, device_topics(self.tenant.tenant_id, self.dev.device_id)["telemetry"],
                     {"ts": int(time.time() * 1000), "values": {"seq": self.seq}})
        return self.seq


def _seqs(bootstrap: str, topic: str, device: _Device) -> set[int]:
    return {_seq(m.value()) for m in _read_all(bootstrap, topic) if wire.peek_string(m.value(), 1) == device.dev.device_id}


def _seq(value: bytes) -> int:
    return int(codec("telemetry").decode(value)["values"]["seq"])


def _on_telemetry(bootstrap: str, device: _Device, seq: int) -> bool:
    return seq in _seqs(bootstrap, topics.TELEMETRY.name, device)


@pytest.fixture(scope="module")
def tenants(stack, factory, gateway):
    a, b = factory.tenant("export-a"), factory.tenant("export-b")
    return {"a": a, "b": b, "ha": bearer(a.token(gateway)), "hb": bearer(b.token(gateway))}


def test_an_exporting_tenants_readings_reach_its_topic_and_nobody_elses(tenants, factory, gateway, settings):
    a, b, ha, hb = tenants["a"], tenants["b"], tenants["ha"], tenants["hb"]
    bs, topic = settings.bootstrap_servers, topics.tenant_export_topic(a.tenant_id)
    assert gateway.get("/v1/kafka-export", headers=ha).json() == {"telemetry": False, "topic": topic}

    r = gateway.put("/v1/kafka-export", json={"telemetry": True}, headers=ha)
    assert r.status_code == 200, r.text
    assert r.json() == {"telemetry": True, "topic": topic}
    assert _topic_exists(bs, topic)  # before any reading: a consumer never meets a missing topic
    assert gateway.get("/v1/kafka-export", headers=ha).json()["telemetry"] is True
    audit = gateway.get("/v1/audit", headers=ha).json()["data"]
    assert any(e["action"] == "kafka_export.telemetry_on" and e["target"] == f"tenant:{a.tenant_id}" for e in audit)

    da, db_ = _Device(factory, a), _Device(factory, b)
    # the validate agent reads the switch from fleetstream.tenants on its own: send until a reading is copied
    wait_for(lambda: da.send() and bool(_seqs(bs, topic, da)), timeout=90, interval=1, what="a copied reading")
    last = da.send()
    sent_b = db_.send()
    wait_for(lambda: _on_telemetry(bs, db_, sent_b) and last in _seqs(bs, topic, da), timeout=90, interval=0.5,
             what="the last reading of A exported and B's reading validated")

    records = _read_all(bs, topic)
    assert {wire.peek_string(m.value(), 0) for m in records} == {a.tenant_id}  # nobody else's readings
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": settings.schema_registry_endpoint}))
    ctx = SerializationContext(topic, MessageField.VALUE)
    m = next(m for m in records if _seq(m.value()) == last)
    rec = deserialize(m.value(), ctx)
    assert (rec["tenant_id"], rec["device_id"], rec["values"]["seq"]) == (a.tenant_id, da.dev.device_id, last)
    assert m.key() == device_key(a.tenant_id, da.dev.device_id)
    twin = next(t for t in _read_all(bs, topics.TELEMETRY.name)
                if t.key() == m.key() and t.value() == m.value())  # the very bytes of fleetstream.telemetry
    assert m.partition() == twin.partition() == partition_for(m.key(), settings.kafka_partitions)

    # B never switched it on: no topic, and its readings are nowhere but the shared topic
    assert gateway.get("/v1/kafka-export", headers=hb).json() == {
        "telemetry": False, "topic": topics.tenant_export_topic(b.tenant_id)}
    assert not _topic_exists(bs, topics.tenant_export_topic(b.tenant_id))


def test_switching_off_stops_the_copy(tenants, factory, gateway, settings):
    a, ha, bs = tenants["a"], tenants["ha"], settings.bootstrap_servers
    topic = topics.tenant_export_topic(a.tenant_id)
    assert gateway.put("/v1/kafka-export", json={"telemetry": True}, headers=ha).status_code == 200
    da = _Device(factory, a)
    wait_for(lambda: da.send() and bool(_seqs(bs, topic, da)), timeout=90, interval=1, what="a copied reading")

    r = gateway.put("/v1/kafka-export", json={"telemetry": False}, headers=ha)
    assert r.status_code == 200 and r.json()["telemetry"] is False, r.text

    def stopped() -> bool:
        # a reading is judged once the next one is validated: the pipe finishes (copies included) one batch
        # before it reads the next, and the next one was sent after the first was on the telemetry topic
        first = da.send()
        wait_for(lambda: _on_telemetry(bs, da, first), timeout=60, what="a reading validated")
        second = da.send()
        wait_for(lambda: _on_telemetry(bs, da, second), timeout=60, what="the next reading validated")
        return first not in _seqs(bs, topic, da)

    wait_for(stopped, timeout=120, interval=0.5, what="the copy to stop")
    # and it stays stopped
    later = da.send()
    after = da.send()
    wait_for(lambda: _on_telemetry(bs, da, after), timeout=60, what="later readings validated")
    assert not {later, after} & _seqs(bs, topic, da)
    audit = gateway.get("/v1/audit", headers=ha).json()["data"]
    assert any(e["action"] == "kafka_export.telemetry_off" for e in audit)


def test_a_tenant_changes_only_its_own_switch(tenants, gateway):
    a, b, ha, hb = tenants["a"], tenants["b"], tenants["ha"], tenants["hb"]
    before = gateway.get("/v1/kafka-export", headers=ha).json()
    r = gateway.put("/v1/kafka-export", json={"telemetry": not before["telemetry"]}, headers=hb)
    assert r.status_code == 200 and r.json()["topic"] == topics.tenant_export_topic(b.tenant_id), r.text
    assert gateway.get("/v1/kafka-export", headers=ha).json() == before
    assert gateway.put("/v1/kafka-export", json={"telemetry": False}, headers=hb).status_code == 200
    # the tenant is the token's: nothing in the body may name another
    r = gateway.put("/v1/kafka-export", json={"telemetry": True, "tenant_id": a.tenant_id}, headers=hb)
    assert r.status_code == 422, r.text
    assert gateway.put("/v1/kafka-export", json={"telemetry": "yes please"}, headers=hb).status_code == 422
