"""The platform on a local 3-node KRaft cluster with SASL_SSL/SCRAM, RF 3 / min ISR 2 (adr/0130–0132, 0190).

One cluster stack for the whole package (tests/cluster/conftest.py), started once (its own ports: the
session's minus 6000, so it runs beside the session's single-broker stack): three brokers, Postgres, Mosquitto,
the Schema Registry and the platform, every Kafka client authenticated with SCRAM-SHA-512 over TLS that verifies
the brokers' certificate against the platform root CA. The brokers also listen for OAUTHBEARER with Kafka's
unsecured-JWT validator, where both clients' token callbacks are checked, and for SSL with required client
certificates (mTLS); both test listeners need the dev flag (adr/0191)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from confluent_kafka import KafkaException

from fleetstream.stack import kafka as stack_kafka
from fleetstream.stack.supervisor import settings_env
from runtime.kafka import READER, KafkaClients, KafkaRefused, KafkaUnreachable
from runtime.kafka_security import KafkaSecurity, only_for_tests
from runtime.pki import PlatformPKI, cert_pem, self_signed_ca
from runtime.settings import Settings
from schemas import topics
from schemas.namespace import device_topics
from tests.utils.factories import Factory, publish_json, wait_for

pytestmark = pytest.mark.integration

def test_the_cluster_runs_sasl_ssl_with_three_brokers_and_every_platform_topic_is_rf3_min_isr2(s):
    assert s.kafka_security_protocol == "SASL_SSL" and s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    conf = s.kafka.config()  # what every platform process connects with: the platform CA, nothing switched off
    assert conf["security.protocol"] == "SASL_SSL" and conf["ssl.ca.location"] == str(PlatformPKI(s.pki_dir).ca_cert)
    assert not only_for_tests(s.model_copy(update={"kafka_test_oauth_listener": False,
                                                    "kafka_test_mtls_listener": False}))
    admin = s.kafka.admin()
    md = admin.list_topics(timeout=30)
    assert len(md.brokers) == 3
    from confluent_kafka.admin import ConfigResource

    # the platform's own topics and the worker's (changelogs, bundles) were all created by the platform
    created = [t for t in md.topics if t.startswith("fleetstream")]
    assert {t.name for t in topics.ALL} <= set(created)
    assert any("changelog" in t for t in created), created
    for name in created:
        assert all(len(p.replicas) == 3 for p in md.topics[name].partitions.values()), name
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in created])
    for r, fut in res.items():
        assert fut.result(30)["min.insync.replicas"].value == "2", r.name


def test_a_devices_reading_reaches_storage_through_the_sasl_cluster(s):
    f = Factory(s)
    try:
        t = f.tenant("sasl")
        dev = f.device(t)
        client = f.mqtt_client(dev)
        ts = int(time.time() * 1000)
        assert publish_json(client, device_topics(t.tenant_id, dev.device_id)["telemetry"],
                            {"ts": ts, "values": {"temperature": 23.75}}).rc == 0
        with httpx.Client(base_url=f"http://{s.host}:{s.gateway_port}", timeout=10) as gw:
            token = t.token(gw)
            points = wait_for(lambda: gw.get(f"/v1/devices/{dev.device_id}/telemetry",
                                             params={"metric": "temperature"},
                                             headers={"Authorization": f"Bearer {token}"}).json().get("points"),
                              timeout=120, what="the reading to be queryable")
        assert [p["value"] for p in points] == [23.75]
        client.disconnect()
    finally:
        f.close()


def test_a_wrong_password_fails_fast_in_one_line(s):
    wrong = s.model_copy(update={"kafka_sasl_password": "not-the-password"}).kafka
    t0 = time.monotonic()
    with pytest.raises(KafkaUnreachable) as err:
        wrong.verify(timeout_s=60)
    assert time.monotonic() - t0 < 30  # refused, not timed out
    msg = str(err.value)
    assert "\n" not in msg and "refused" in msg and "Authentication failed" in msg, msg
    assert "not-the-password" not in msg

    # and a platform process with it exits at start-up with that line (no hang, no retry loop)
    env = {**os.environ, **settings_env(s), "FLEETSTREAM_KAFKA_SASL_PASSWORD": "not-the-password"}
    r = subprocess.run([sys.executable, "-m", "fleetstream.cli", "run", "sink"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "refused SASL_SSL SCRAM-SHA-512 (user 'fleetstream')" in \
        r.stderr, r.stderr


def test_a_broker_certificate_from_another_ca_is_refused(s, tmp_path):
    """The clients verify the brokers' certificate: trusting a CA that did not sign it, both refuse to talk
    (so the stack's success above is over verified TLS, not over any certificate)."""
    other = self_signed_ca("some other CA")
    ca = tmp_path / "other-ca.crt"
    ca.write_bytes(cert_pem(other.cert))
    wrong = s.model_copy(update={"kafka_ssl_ca_file": ca}).kafka
    with pytest.raises(KafkaRefused) as err:
        wrong.verify(timeout_s=60)
    assert "SSL" in str(err.value) and "certificate verify failed" in str(err.value), err.value

    async def aiokafka_connects() -> None:
        from aiokafka import AIOKafkaProducer
        from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

        auth = credentials_to_aiokafka_auth(wrong.faust_options()["broker_credentials"])
        prod = AIOKafkaProducer(bootstrap_servers=wrong.bootstrap_servers, request_timeout_ms=20000, **auth)
        try:
            await prod.start()
        finally:
            await prod.stop()

    with pytest.raises(Exception) as aio_err:  # aiokafka wraps the ssl error as a connection error
        asyncio.run(aiokafka_connects())
    assert "certificate verify failed" in repr(aio_err.value) or "KafkaConnectionError" in repr(aio_err.value)


def _both_clients_round_trip(k: KafkaClients, name: str) -> list[bytes]:
    """One record from librdkafka, one from aiokafka (what Faust gets), both read back by aiokafka: sorted."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    p = k.producer({"acks": "all"})
    p.produce(name, b"from-librdkafka")
    assert p.flush(60) == 0

    async def aiokafka_roundtrip() -> list[bytes]:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        auth = credentials_to_aiokafka_auth(k.faust_options()["broker_credentials"])
        prod = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers, enable_idempotence=True, **auth)
        await prod.start()
        try:
            await prod.send_and_wait(name, b"from-aiokafka")
        finally:
            await prod.stop()
        cons = AIOKafkaConsumer(name, bootstrap_servers=k.bootstrap_servers, auto_offset_reset="earliest", **auth)
        await cons.start()
        try:
            got: list[bytes] = []
            async with asyncio.timeout(60):
                while len(got) < 2:
                    for msgs in (await cons.getmany(timeout_ms=1000)).values():
                        got += [m.value for m in msgs]
            return got
        finally:
            await cons.stop()

    return sorted(asyncio.run(aiokafka_roundtrip()))


def _mtls(s: Settings, cert: str | None, key: str | None) -> KafkaClients:
    sec = KafkaSecurity(protocol="SSL", ca_file=str(PlatformPKI(s.pki_dir).ca_cert), cert_file=cert,
                        key_file=key).validated()
    return KafkaClients(stack_kafka.mtls_bootstrap(s), "mtls-test", sec.librdkafka(), sec, 3, 2)


def test_ssl_with_a_client_certificate_for_both_clients(s, tmp_path):
    """The mTLS shape (Strimzi-style SSL listeners): a client certificate from the platform CA is accepted by
    librdkafka and by aiokafka (what Faust gets); without one the listener refuses."""

    # the cluster authorizes (adr/0145): the certificate's CN gets what this test does, and no more
    _allow(s, "fleetstream-kafka-test-client", topic_prefix="mtls-test-", group_prefix="mtls-")
    pki = PlatformPKI(s.pki_dir)
    pki.issue("fleetstream-kafka-test-client", into=tmp_path)
    cert, key = str(tmp_path / "fleetstream-kafka-test-client.crt"), str(tmp_path / "fleetstream-kafka-test-client.key")
    k = _mtls(s, cert, key)
    name = f"mtls-test-{uuid.uuid4().hex[:6]}"
    admin = k.admin()
    admin.create_topics([k.new_topic(name, 1)])[name].result(60)
    assert _both_clients_round_trip(k, name) == [b"from-aiokafka", b"from-librdkafka"]

    # a client that trusts the brokers but presents no certificate: the brokers answer with TLS alert 42 (bad
    # certificate), which librdkafka reports as a transport error (not an SSL one, so `verify` would only time
    # out): wait for that refusal rather than for a timeout, then check it got no metadata
    errors = []
    anonymous = _mtls(s, None, None).admin({"error_cb": errors.append, "log_level": 0})
    wait_for(lambda: (anonymous.poll(0.2), any("alert bad certificate" in e.str() for e in errors))[1],
             timeout=60, what="the mTLS listener to refuse a client without a certificate")
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=2)


def _unsecured(s: Settings, principal: str) -> KafkaClients:
    sec = KafkaSecurity(protocol="SASL_PLAINTEXT", mechanism="OAUTHBEARER", username=principal,
                        oauth_provider="unsecured-jwt", allow_test_only=True).validated()
    return KafkaClients(stack_kafka.oauth_bootstrap(s), "oauth-test", sec.librdkafka(), sec, 3, 2)


def _allow(s: Settings, principal: str, *, topic_prefix: str, group_prefix: str) -> None:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    who, allow, pre = f"User:{principal}", AclPermissionType.ALLOW, ResourcePatternType.PREFIXED
    acls = [AclBinding(ResourceType.TOPIC, topic_prefix, pre, who, "*", AclOperation.ALL, allow),
            AclBinding(ResourceType.GROUP, group_prefix, pre, who, "*", AclOperation.ALL, allow),
            AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, who, "*",
                       AclOperation.IDEMPOTENT_WRITE, allow)]
    admin = s.kafka.admin()  # held while its requests run
    for fut in admin.create_acls(acls).values():
        fut.result(60)


def test_oauthbearer_token_callbacks_of_both_clients_authenticate(s):
    """confluent-kafka's ``oauth_cb`` and aiokafka's ``sasl_oauth_token_provider`` (what Faust gets) with the
    tokens of the unsecured-JWT provider: the same path MSK IAM tokens take."""

    # the cluster authorizes (adr/0145): the token's principal gets what this test does, and no more
    _allow(s, "oauth-tester", topic_prefix="oauth-test-", group_prefix="oauth-")
    k = _unsecured(s, "oauth-tester")
    name = f"oauth-test-{uuid.uuid4().hex[:6]}"
    admin = k.admin()  # held: a client that is collected takes its pending requests with it
    admin.create_topics([k.new_topic(name, 1)])[name].result(60)
    k.verify(timeout_s=60)
    assert _both_clients_round_trip(k, name) == [b"from-aiokafka", b"from-librdkafka"]

    # a consumer of librdkafka reads both back through the same listener
    c = k.consumer(f"oauth-{uuid.uuid4().hex[:6]}", READER, {"auto.offset.reset": "earliest"})
    c.subscribe([name])
    seen: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            seen.append(m.value())
    c.close()
    assert sorted(seen) == [b"from-aiokafka", b"from-librdkafka"]
