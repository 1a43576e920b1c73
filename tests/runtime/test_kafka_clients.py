"""The one Kafka client factory (adr/0125): what every client's config is made of, and that the deployables
build no client anywhere else. Pure: no broker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fleetstream.stack.supervisor import settings_env
from runtime import kafka
from runtime.kafka import KafkaClients, clients
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOYABLES = ("connectors", "streams", "sinks", "gateway")


def test_config_is_bootstrap_and_client_id_then_profiles_then_security_last():
    k = KafkaClients("a:1,b:2", "fs", {"security.protocol": "SSL", "ssl.ca.location": "/ca.pem"})
    conf = k.config({"linger.ms": 1, "security.protocol": "PLAINTEXT"}, {"linger.ms": 7})
    assert conf == {"bootstrap.servers": "a:1,b:2", "client.id": "fs", "linger.ms": 7,
                    "security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}
    assert k.config(client_id="fleetstream-outbox")["client.id"] == "fleetstream-outbox"
    assert "ssl" not in repr(k)  # security may hold a SASL password: never in a log line


def test_settings_build_the_factory_and_security_survives_the_trip_to_a_child(monkeypatch):
    s = Settings(kafka_port=1234, host="h", kafka_security={"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"})
    # raw librdkafka properties (FLEETSTREAM_KAFKA_SECURITY) still reach every confluent-kafka client, last
    assert s.kafka.config() == KafkaClients("h:1234", "fleetstream", {"security.protocol": "SASL_SSL",
                                                                      "sasl.mechanism": "PLAIN"}).config()
    assert Settings().kafka.security == {}  # PLAINTEXT by default
    env = settings_env(s)
    assert json.loads(env["FLEETSTREAM_KAFKA_SECURITY"]) == s.kafka_security
    assert "kafka_security" in Settings.secret_fields()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert Settings().kafka == s.kafka


def test_a_bootstrap_string_is_a_plaintext_factory_and_a_factory_is_itself():
    k = KafkaClients("x:1", security={"security.protocol": "SSL"})
    assert clients(k) is k
    assert clients("x:1") == KafkaClients("x:1")


def test_every_producer_profile_is_idempotent_with_acks_all():
    for profile in (kafka.IDEMPOTENT, kafka.UPLINK_PRODUCER, kafka.CONTROL_PRODUCER, kafka.BATCH_PRODUCER):
        assert profile["enable.idempotence"] is True and profile["acks"] == "all"


def test_faust_gets_the_same_brokers_replication_and_refuses_raw_security_it_cannot_map():
    assert KafkaClients("a:1,b:2").faust_options() == {"broker": "kafka://a:1,b:2", "topic_replication_factor": 1}
    assert KafkaClients("a:1", replication_factor=3).faust_options()["topic_replication_factor"] == 3
    with pytest.raises(ValueError, match="FLEETSTREAM_KAFKA_SECURITY_PROTOCOL"):
        KafkaClients("a:1", security={"security.protocol": "SSL"}).faust_options()


def test_every_topic_the_platform_creates_carries_the_configured_durability():
    k = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2).kafka
    t = k.new_topic("fleetstream.x", 6, {"cleanup.policy": "compact"})
    assert (t.topic, t.num_partitions, t.replication_factor) == ("fleetstream.x", 6, 3)
    assert t.config == {"cleanup.policy": "compact", "min.insync.replicas": "2"}
    assert k.topic_config() == {"min.insync.replicas": "2"}


def test_the_clients_are_built_by_the_factory_with_its_config():
    k = KafkaClients("127.0.0.1:1", "fs-test")
    p = k.producer(kafka.CONTROL_PRODUCER)
    c = k.consumer("g", kafka.READER)
    a = k.admin({"socket.timeout.ms": 100})
    c.close()
    assert p.flush(0) == 0 and a is not None


def _sources():
    for pkg in DEPLOYABLES:
        yield from (ROOT / pkg).rglob("*.py")


def test_deployables_build_no_kafka_client_themselves():
    """Every Producer, Consumer and AdminClient of connectors, streams, sinks and the gateway comes from the
    factory, and none of them reads the bootstrap servers itself (its clients would lose the security)."""
    built = re.compile(r"\b(Producer|Consumer|AdminClient)\(")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in _sources()
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if built.search(line) or "bootstrap_servers" in line]
    assert found == []
