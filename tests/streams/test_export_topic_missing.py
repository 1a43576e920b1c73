"""The verdict on a missing export topic (adr/0146), on the real broker: the validate agent's batch loop
(``BatchPipe`` around a real ``Validator``) creates an exporting tenant's topic before its first copy, and when
the topic is deleted under it, the failed batch is read again and the topic recreated: every reading reaches
both the validated topic and the export topic (duplicates allowed, losses not), and another tenant's readings
in the same batches get through too. The brokers never create topics on write (``auto.create.topics.enable=
false``). The validated topic is one of the test's own (``validate.OUT`` swapped), not the stack's."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from runtime.kafka import KafkaClients, ensure_tenant_export_topic
from runtime.settings import Settings
from schemas import codec, device_key, topics
from streams import validate
from streams.batch_pipe import BatchPipe
from streams.registry import RegistryView
from tests.utils.factories import wait_for

PARTITIONS = 3


def _views(*tenants: str) -> RegistryView:
    views = RegistryView("127.0.0.1:1")  # never started: entries arrive through apply()
    views.caught_up.set()
    now = int(time.time() * 1000)
    for tenant, exports in tenants:
        views.apply(topics.REGISTRY.name, device_key(tenant, "d1"), codec("registry_entry").encode({
            "tenant_id": tenant, "device_id": "d1", "status": "active", "device_type": None, "tags": [],
            "attributes": {}, "jwt_public_keys": [], "version": 1, "time": now}))
        views.tenant_view.apply(topics.TENANTS.name, tenant.encode(), codec("tenant_entry").encode(
            {"tenant_id": tenant, "status": "active", "time": now, "export_telemetry": exports}))
    return views


def _send(bootstrap: str, topic: str, tenant: str, seqs: range) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "enable.idempotence": True})
    now = int(time.time() * 1000)
    for i in seqs:
        rec = {"tenant_id": tenant, "device_id": "d1", "event_time": now, "receive_time": now, "protocol": "mqtt",
               "values": {"seq": i}, "device_type": None, "tags": []}
        p.produce(topic, codec("telemetry").encode(rec), device_key(tenant, "d1"))
    assert p.flush(60) == 0


def _seqs(bootstrap: str, topic: str, tenant: str) -> set[int]:
    """The ``seq`` of every reading of ``tenant`` on ``topic`` now (to its high watermarks)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            return set()
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        left, out = {p for p, e in ends.items() if e > 0}, set()
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                rec = codec("telemetry").decode(m.value())
                if rec["tenant_id"] == tenant:
                    out.add(int(rec["values"]["seq"]))
                if m.offset() + 1 >= ends[m.partition()]:
                    left.discard(m.partition())
        return out
    finally:
        c.close()


def _gone(admin: AdminClient, topic: str) -> bool:
    md = admin.list_topics(topic=topic, timeout=10).topics[topic]
    return md.error is not None and md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_a_missing_or_deleted_export_topic_is_created_and_no_reading_is_lost(infra, settings, monkeypatch):
    run = uuid.uuid4().hex[:8]
    bs = settings.bootstrap_servers
    src, out = f"test.export.src.{run}", f"test.export.out.{run}"
    exporter, other = str(uuid.uuid4()), str(uuid.uuid4())
    export = topics.tenant_export_topic(exporter)
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in (src, out)],
                                 operation_timeout=30).values():
        f.result()
    monkeypatch.setattr(validate, "OUT", out)
    kafka = KafkaClients(bs)
    made: list[bool] = []
    validator = validate.Validator(Settings(), _views((exporter, True), (other, False)),
                                   ensure_export=lambda t: made.append(
                                       ensure_tenant_export_topic(kafka, admin, t, PARTITIONS)))
    # a copy to the deleted topic fails after message.timeout.ms: 5 s here instead of librdkafka's wait of ~30 s
    # for the topic to come back (the batch is read again either way; how soon does not matter to the verdict)
    pipe = BatchPipe(bs, src, f"test-export-{run}", validator.process, on_failure=validator.forget_export_topics,
                     name=f"test-export-{run}", producer_config={"message.timeout.ms": 5000}).start()
    try:
        assert _gone(admin, export)
        _send(bs, src, exporter, range(0, 20))
        _send(bs, src, other, range(0, 20))
        wait_for(lambda: _seqs(bs, export, exporter) == set(range(20)), timeout=120, what="the first copies")
        assert made == [True]  # the validator created it, with the platform's partitions
        assert len(admin.list_topics(topic=export, timeout=10).topics[export].partitions) == PARTITIONS

        admin.delete_topics([export], operation_timeout=30)[export].result()
        wait_for(lambda: _gone(admin, export), timeout=60, what="the export topic deleted")
        _send(bs, src, exporter, range(20, 40))
        _send(bs, src, other, range(20, 40))
        # the batch whose copies found no topic fails, is read again, and the topic is made again
        wait_for(lambda: set(range(20, 40)) <= _seqs(bs, export, exporter), timeout=240, interval=1,
                 what="the copies after the deletion")
        wait_for(lambda: _seqs(bs, out, exporter) == set(range(40)) and _seqs(bs, out, other) == set(range(40)),
                 timeout=120, what="every reading of both tenants validated")
        assert _seqs(bs, out, other) and not _seqs(bs, export, other)  # the other tenant is never copied
        assert pipe.stats["restarts"] >= 1 and made.count(True) == 2, (pipe.stats, made)
    finally:
        pipe.stop()
        admin.delete_topics([src, out, export], operation_timeout=30)
