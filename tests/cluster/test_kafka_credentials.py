"""Tenant Kafka credentials on the real SASL cluster (adr/0145): a data engineer of tenant A gets a SCRAM user
through the API and reads A's export topic with stock tools (confluent-kafka's consumer and its
``AvroDeserializer`` against the registry); the cluster's authorizer refuses the same user B's export topic,
the shared internal topics, every write and any consumer group outside A's prefix; after revoke it cannot log
in. A credential reads its tenant's continuous export once the tenant switches it on (adr/0146). Runs on the
package's one cluster stack (tests/cluster/conftest.py)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import codec, device_key, topics
from schemas.namespace import device_topics
from streams.app import web_auth_headers
from tests.utils.factories import Factory, publish_json, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gw(s):
    with httpx.Client(base_url=f"http://{s.host}:{s.gateway_port}", timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def factory(s):
    f = Factory(s)
    yield f
    f.close()


def _h(tenant, gw) -> dict:
    return {"Authorization": f"Bearer {tenant.token(gw)}"}


def _client_conf(issued: dict, **extra) -> dict:
    c = issued["connection"]
    tls = {"ssl.ca.pem": c["ssl_ca_pem"]} if c.get("ssl_ca_pem") else {}  # the CA the credential came with
    return {"bootstrap.servers": c["bootstrap"], "security.protocol": c["security_protocol"],
            "sasl.mechanism": c["sasl_mechanism"], "sasl.username": issued["username"],
            "sasl.password": issued["password"], **tls, **extra}


def _consumer(issued: dict, group: str) -> Consumer:
    return Consumer(_client_conf(issued, **{"group.id": group, "auto.offset.reset": "earliest",
                                            "enable.auto.commit": False}))


def _first_error_or_message(c: Consumer, timeout: float = 90):
    """The first record, or the first error that is not "topic not there yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error() and m.error().code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF):
            continue
        return m
    raise AssertionError(f"nothing within {timeout}s")


def _refused(issued: dict, topic: str, group: str) -> int:
    c = _consumer(issued, group)
    try:
        c.subscribe([topic])
        m = _first_error_or_message(c)
        assert m.error() is not None, f"{topic} as {group}: read a record"
        return m.error().code()
    finally:
        c.close()


def _all_refused(issued: dict, cases: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """``_refused`` for each (topic, group), side by side: each is a consumer of its own that only waits for
    the cluster's answer (seven of them one after another took ~13 s under load)."""
    with ThreadPoolExecutor(len(cases)) as pool:
        return dict(zip(cases, pool.map(lambda case: _refused(issued, *case), cases), strict=True))


REFUSALS = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)


def _login_refused(client: AdminClient, errors: list[KafkaError], timeout: float = 5) -> bool:
    """True once ``client`` (its error callback appending to ``errors``) reports its login refused, False if it
    gets metadata (logged in) or neither happens within ``timeout``. Asked every half second: a refused
    client's ``list_topics`` only ever ends at its timeout, the refusal is known long before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=0.5)
            return False
        except KafkaException:
            client.poll(0)  # error callbacks are served by poll()
            if any(e.code() in REFUSALS for e in errors):
                return True
    return False


def _refuses_login(issued: dict, broker: str) -> bool:
    """Whether this one broker refuses the credential's login (a client bootstrapped from it alone)."""
    errors: list[KafkaError] = []
    one = AdminClient(_client_conf(issued, **{"bootstrap.servers": broker, "error_cb": errors.append,
                                              "log_level": 0}))
    return _login_refused(one, errors)


def _republish_rule(s, gw, tenant) -> str:
    h = _h(tenant, gw)
    r = gw.post("/v1/rules", headers=h, json={"name": "export", "actions": [{"type": "republish"}],
                                              "condition": {"type": "threshold", "metric": "temperature",
                                                            "op": ">", "value": 50}})
    assert r.status_code == 201, r.text
    rid, version = r.json()["rule_id"], r.json()["version"]
    url = f"http://{s.host}:{s.streams_web_port}/rules/{tenant.tenant_id}/"
    wait_for(lambda: httpx.get(url, headers=web_auth_headers(s), timeout=10).json().get(rid) == version,
             timeout=120, what="the streams worker to hold the rule")
    return rid


def test_a_tenants_credentials_read_its_export_topic_only_and_stop_at_revoke(s, gw, factory):
    a, b = factory.tenant("dataeng-a"), factory.tenant("dataeng-b")
    ha, hb = _h(a, gw), _h(b, gw)
    export_a, export_b = topics.tenant_export_topic(a.tenant_id), topics.tenant_export_topic(b.tenant_id)

    admin, p = s.kafka.admin(), s.kafka.producer()
    ts = int(time.time() * 1000)
    rec_b = {"tenant_id": b.tenant_id, "device_id": "b-dev", "event_time": ts, "receive_time": ts,
             "protocol": "mqtt", "values": {"temperature": 99.0}, "device_type": None, "tags": []}

    def a_reading_on_its_way():
        # A's readings reach A's export topic the way they do in production: a device, a rule that republishes
        dev = factory.device(a)
        _republish_rule(s, gw, a)
        mqtt = factory.mqtt_client(dev)
        assert publish_json(mqtt, device_topics(a.tenant_id, dev.device_id)["telemetry"],
                            {"ts": ts, "values": {"temperature": 75.5}}).rc == 0
        mqtt.disconnect()
        return dev

    def b_export_with_a_record():
        # B's export topic exists and holds a record of B's
        admin.create_topics([s.kafka.new_topic(export_b, 1)])[export_b].result(60)
        p.produce(export_b, codec("telemetry").encode(rec_b), device_key(b.tenant_id, "b-dev"))
        assert p.flush(60) == 0

    def issue():
        # the credential: shown once, for A's topic and group prefix only
        r = gw.post("/v1/kafka-credentials", headers=ha, json={"name": "warehouse"})
        assert r.status_code == 201, r.text
        return r.json()

    # the three are independent and each mostly waits for the cluster (its controller, three replicas): side
    # by side (one after another they took ~25 s at load 40)
    with ThreadPoolExecutor(3) as pool:
        on_its_way, b_ready, issuing = (pool.submit(f) for f in (a_reading_on_its_way, b_export_with_a_record, issue))
        dev, _, issued = on_its_way.result(), b_ready.result(), issuing.result()
    assert issued["topics"] == [export_a] and issued["status"] == "active"
    assert issued["group_prefix"] == topics.tenant_group_prefix(a.tenant_id)
    assert issued["connection"]["security_protocol"] == "SASL_SSL"
    assert "BEGIN CERTIFICATE" in issued["connection"]["ssl_ca_pem"]
    assert len(issued["password"]) >= 32
    cid, group = issued["id"], issued["group_prefix"] + "loader"

    listed = gw.get("/v1/kafka-credentials", headers=ha).json()
    assert [(c["id"], c["status"]) for c in listed["data"]] == [(cid, "active")]
    assert "password" not in listed["data"][0] and issued["password"] not in str(listed)
    assert gw.get("/v1/kafka-credentials", headers=hb).json()["count"] == 0  # B sees none of A's
    assert gw.get(f"/v1/kafka-credentials/{cid}", headers=hb).status_code == 404
    assert gw.delete(f"/v1/kafka-credentials/{cid}", headers=hb).status_code == 404
    audit = gw.get("/v1/audit", headers=ha, params={"target": f"kafka_credential:{cid}"}).json()["data"]
    assert [e["action"] for e in audit] == ["kafka_credential.create"]

    # A's data engineer reads A's export topic with stock tools, values decoded against the registry
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": issued["connection"]["schema_registry_url"]}))
    c = _consumer(issued, group)
    try:
        c.subscribe([export_a])
        got = []

        def read_one():
            m = c.poll(1.0)
            if m is not None and not m.error():
                got.append(deserialize(m.value(), SerializationContext(m.topic(), MessageField.VALUE)))
            elif m is not None and m.error().code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise AssertionError(f"A's own export topic: {m.error()}")
            return got

        wait_for(read_one, timeout=180, interval=0, what="A's reading on A's export topic")
        c.commit(asynchronous=False)  # offsets under A's own group prefix are allowed
    finally:
        c.close()
    assert [(g["device_id"], g["values"]) for g in got] == [(dev.device_id, {"temperature": 75.5})]

    # what it may see: A's export topic, nothing else exists for it
    mine = AdminClient(_client_conf(issued))
    assert set(mine.list_topics(timeout=30).topics) == {export_a}

    # a consumer connected before the revoke, reading (it gets A's reading again under a group of its own): it
    # joins its group and reads while the refusals below are asked
    held = _consumer(issued, issued["group_prefix"] + "held")
    held.subscribe([export_a])
    with ThreadPoolExecutor(1) as pool:
        held_read = pool.submit(_first_error_or_message, held)

        # refused: B's export topic, the shared internal topics (each asked under a group of A's own, one per
        # consumer: they run side by side), a group outside A's prefix
        topic_refused = [(topic, f"{group}-{i}") for i, topic in enumerate((export_b, topics.TELEMETRY.name,
                                                                            topics.REGISTRY.name, topics.DEAD_LETTER.name))]
        group_refused = [(export_a, foreign) for foreign in ("fleetstream-sink-telemetry",
                                                             topics.tenant_group_prefix(b.tenant_id) + "loader", "loader")]
        assert _all_refused(issued, topic_refused + group_refused) == {
            **{case: KafkaError.TOPIC_AUTHORIZATION_FAILED for case in topic_refused},
            **{case: KafkaError.GROUP_AUTHORIZATION_FAILED for case in group_refused}}

        # refused: writing, even to its own export topic
        failures = []
        prod = Producer(_client_conf(issued, **{"on_delivery": lambda err, _m: failures.append(err),
                                                "message.timeout.ms": 30000}))
        prod.produce(export_a, b"not allowed", b"k")
        prod.flush(60)
        assert [e.code() for e in failures] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

        assert not held_read.result().error()

    # revoke: the record says so, the login is gone
    r = gw.delete(f"/v1/kafka-credentials/{cid}", headers=ha)
    assert r.status_code == 200 and r.json()["status"] == "revoked", r.text
    # ACLs went first (the route deletes them before the login): once every broker has applied the login's
    # deletion from the metadata log, each has applied the ACLs' too, and the open connection reads nothing
    # written after that. Brokers apply metadata on their own; under load that takes a moment (adr/0145).
    wait_for(lambda: all(_refuses_login(issued, broker) for broker in issued["connection"]["bootstrap"].split(",")),
             timeout=60, what="every broker to refuse the revoked login")
    p.produce(export_a, codec("telemetry").encode({**rec_b, "tenant_id": a.tenant_id, "device_id": "after"}),
              device_key(a.tenant_id, "after"))
    assert p.flush(60) == 0
    try:
        m = _first_error_or_message(held)
        assert m.error() is not None and m.error().code() in (
            KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED), m.error() or m.value()
    finally:
        held.close()
    assert gw.delete(f"/v1/kafka-credentials/{cid}", headers=ha).json()["status"] == "revoked"  # idempotent
    audit = gw.get("/v1/audit", headers=ha, params={"target": f"kafka_credential:{cid}"}).json()["data"]
    assert [e["action"] for e in audit] == ["kafka_credential.revoke", "kafka_credential.create"]
    errors: list[KafkaError] = []
    gone = AdminClient(_client_conf(issued, error_cb=errors.append, log_level=0))
    assert _login_refused(gone, errors, timeout=60), errors  # through any broker of the bootstrap list
    with pytest.raises(KafkaException):
        gone.list_topics(timeout=5)  # and still no metadata once refused
    # and nothing of it is left in Kafka
    assert issued["username"] not in admin.describe_user_scram_credentials().result(30)
    assert admin.describe_user_scram_credentials().result(30)  # the platform's own user is still there


def test_a_credential_reads_its_tenants_continuous_export(s, gw, factory):
    """adr/0146 over SASL: the topic exists from the credential's issue on (no UNKNOWN_TOPIC_OR_PART), and once
    the tenant switches its export on, its devices' validated readings reach the credential's consumer, with no
    rule involved."""
    t = factory.tenant("dataeng-export")
    h = _h(t, gw)
    topic = topics.tenant_export_topic(t.tenant_id)
    r = gw.post("/v1/kafka-credentials", headers=h, json={"name": "stream"})
    assert r.status_code == 201, r.text
    issued = r.json()
    md = AdminClient(_client_conf(issued)).list_topics(topic=topic, timeout=30).topics[topic]
    assert md.error is None and len(md.partitions) == s.kafka_partitions  # created at issue, before any reading

    assert gw.put("/v1/kafka-export", headers=h, json={"telemetry": True}).json()["telemetry"] is True
    dev = factory.device(t)
    mqtt = factory.mqtt_client(dev)
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": issued["connection"]["schema_registry_url"]}))
    c = _consumer(issued, issued["group_prefix"] + "stream")
    got: list[dict] = []
    try:
        c.subscribe([topic])

        def send_and_read():
            # the validate agent reads the switch from fleetstream.tenants on its own: send until one is copied
            publish_json(mqtt, device_topics(t.tenant_id, dev.device_id)["telemetry"],
                         {"ts": int(time.time() * 1000), "values": {"temperature": 21.5}})
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and not got:
                m = c.poll(0.5)
                if m is not None and m.error():
                    raise AssertionError(f"the tenant's export topic: {m.error()}")
                if m is not None:
                    got.append(deserialize(m.value(), SerializationContext(m.topic(), MessageField.VALUE)))
            return got

        wait_for(send_and_read, timeout=180, interval=0, what="a validated reading on the tenant's export topic")
    finally:
        c.close()
        mqtt.disconnect()
    assert (got[0]["tenant_id"], got[0]["device_id"], got[0]["values"]) == (t.tenant_id, dev.device_id,
                                                                           {"temperature": 21.5})
    assert gw.delete(f"/v1/kafka-credentials/{issued['id']}", headers=h).json()["status"] == "revoked"


def test_credentials_are_scope_protected_and_ids_are_checked(s, gw, factory):
    t = factory.tenant("dataeng-scope")
    narrow = {"Authorization": f"Bearer {t.token(gw, scope='devices:read')}"}
    r = gw.post("/v1/kafka-credentials", headers=narrow, json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    assert gw.get("/v1/kafka-credentials", headers=narrow).status_code == 403
    h = _h(t, gw)
    assert gw.get("/v1/kafka-credentials/not-a-uuid", headers=h).status_code == 404
    assert gw.delete(f"/v1/kafka-credentials/{uuid.uuid4()}", headers=h).status_code == 404
    # the tenant comes from the token only: a body naming another tenant is refused, not obeyed
    r = gw.post("/v1/kafka-credentials", headers=h, json={"tenant_id": str(uuid.uuid4())})
    assert r.status_code == 422
