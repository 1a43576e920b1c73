"""Tenant Kafka credentials without a cluster (adr/0145): on the PLAINTEXT default the route answers a clear 409
(the route and the real service, lifespan not run), and the ACLs a credential gets are exactly the read-only
grants on its tenant's export topic and group prefix. The real thing runs in tests/cluster/."""

from __future__ import annotations

from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
from fastapi.testclient import TestClient

from gateway.api import deps
from gateway.app import create_app
from gateway.auth.tokens import Principal
from gateway.kafka_credentials import KafkaCredentials, grants, unavailable_reason
from runtime.settings import Settings
from schemas.topics import tenant_export_topic, tenant_group_prefix

TENANT = "6f1c1c3e-1d2b-4c9a-9a53-0f1e2d3c4b5a"


def test_the_plaintext_default_answers_409_naming_the_sasl_cluster(tmp_path):
    s = Settings(data_dir=tmp_path)
    app = create_app(s)
    app.dependency_overrides[deps.get_principal] = lambda: Principal(TENANT, "c1", frozenset({"kafka:credentials"}))
    app.dependency_overrides[deps.get_settings] = lambda: s
    # no database and no Kafka admin: the refusal comes before either is touched
    app.dependency_overrides[deps.get_kafka_credentials] = lambda: KafkaCredentials(s, None, None)  # type: ignore[arg-type]
    r = TestClient(app).post("/v1/kafka-credentials", json={"name": "x"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "kafka_credentials_unavailable"
    assert "SASL" in err["message"] and "--kafka-brokers 3" in err["message"] and "PLAINTEXT" in err["message"]


def test_only_sasl_with_scram_can_issue():
    base = {"data_dir": "/tmp/unused"}
    assert unavailable_reason(Settings(**base, kafka_security_protocol="SSL"))
    assert "AWS_MSK_IAM" in unavailable_reason(Settings(**base, kafka_security_protocol="SASL_SSL",
                                                        kafka_sasl_mechanism="AWS_MSK_IAM"))
    assert unavailable_reason(Settings(**base, kafka_security_protocol="SASL_SSL",
                                       kafka_sasl_mechanism="SCRAM-SHA-512")) is None


def test_a_credential_may_read_its_tenants_export_topic_and_use_its_group_prefix_and_nothing_else():
    got = {(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)
           for b in grants("tenant-x-1", TENANT)}
    who, allow = "User:tenant-x-1", AclPermissionType.ALLOW
    assert got == {
        (ResourceType.TOPIC, tenant_export_topic(TENANT), ResourcePatternType.LITERAL, who, "*", AclOperation.READ, allow),
        (ResourceType.TOPIC, tenant_export_topic(TENANT), ResourcePatternType.LITERAL, who, "*", AclOperation.DESCRIBE,
         allow),
        (ResourceType.GROUP, tenant_group_prefix(TENANT), ResourcePatternType.PREFIXED, who, "*", AclOperation.READ, allow),
        (ResourceType.GROUP, tenant_group_prefix(TENANT), ResourcePatternType.PREFIXED, who, "*",
         AclOperation.DESCRIBE, allow),
    }
    # a prefix ending in the separator: tenant.<A>. never matches a group of a tenant whose id extends A's
    assert tenant_group_prefix(TENANT).endswith(".")
