"""The published topic contract: an AsyncAPI 3.0 document generated from ``schemas/`` (adr/0142).

``fleetstream schemas asyncapi`` writes it to ``docs/asyncapi.yaml``; a test fails when the committed file
differs from what this module generates, and validates it against AsyncAPI's own 3.0.0 JSON Schema. Every
input is in this package: topics and their policies (``topics``), value schemas (``avro/*.avsc``), subjects
and wire format (``subjects``, ``wire``), keys, partitioner, writers and readers (``contract``).
"""

from __future__ import annotations

from typing import Any

import yaml

from . import topics
from .codec import load_schema
from .contract import CONTRACTS, TENANT_CONTRACTS, TopicContract, contract
from .subjects import value_subject

AVRO_FORMAT = "application/vnd.apache.avro;version=1.11.0"
KAFKA_BINDING = "0.5.0"
# the local stack's addresses (runtime.settings defaults); production's come from its deployment
LOCAL_KAFKA = "127.0.0.1:19092"
LOCAL_REGISTRY = "http://127.0.0.1:18081/apis/ccompat/v7"
DEFAULT_PARTITIONS = 6  # runtime.settings.Settings.kafka_partitions (a test keeps them equal)

DESCRIPTION = """\
fleetstream's Kafka topics as a product: what each holds, how to read it, who writes it and who reads it.
Generated from `schemas/` by `fleetstream schemas asyncapi`; do not edit by hand.

**Values** use the Confluent wire format: byte `0`, the 4-byte big-endian Schema Registry id, then the Avro
binary body (adr/0140). Subjects follow TopicNameStrategy (`<topic>-value`); every subject is BACKWARD
compatible, so a reader with an older schema keeps reading. Any registry-aware decoder reads them:
confluent-kafka's `AvroDeserializer`, Kafka Connect's Avro converters, ClickHouse's `AvroConfluent`,
Flink `avro-confluent`, Spark `from_avro` with a registry.

**Keys** are plain UTF-8 strings, not registered; for device data `tenant:device`.

**Partitioning**: every producer uses the Java client's default for keyed records, `murmur2(key) &
0x7fffffff % partitions` (librdkafka `murmur2_random`), so a device's records share one partition, in
order, whoever writes them (adr/0141). Partition counts below are the local default; a deployment may set
more (`FLEETSTREAM_KAFKA_PARTITIONS`).

**Access**: channels tagged `export` are shared by all tenants: reading one reads every tenant's records,
so only platform credentials may (the platform's own data engineers). A tenant's data engineers get Kafka
credentials of their own (`POST /v1/kafka-credentials`, adr/0145) that read exactly one channel, tagged
`tenant`: their tenant's `fleetstream.export.{tenant_id}`, which holds the tenant's validated telemetry while
the tenant exports it (`PUT /v1/kafka-export {"telemetry": true}`, adr/0146) and its rules' republished
readings. Channels tagged `internal` are the platform's own plumbing (each says why) and may change without
notice.
"""
TENANT_CHANNEL_ID = "tenant-export"


def _channel_id(topic: str) -> str:
    return topic.removeprefix("fleetstream.").replace(".", "-")


def build(default_partitions: int = DEFAULT_PARTITIONS) -> dict[str, Any]:
    """The AsyncAPI document as plain data (YAML/JSON-ready)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    unpublished = [t.name for t in topics.ALL if t.name not in CONTRACTS]
    if unpublished:
        raise KeyError(f"topics without a contract in schemas/contract.py: {', '.join(unpublished)}")
    shared = [(t, contract(t.name), _channel_id(t.name), False) for t in topics.ALL]
    own = [(t, TENANT_CONTRACTS[t.name], TENANT_CHANNEL_ID, True) for t in (topics.TENANT_EXPORT,)]
    for t, c, cid, per_tenant in shared + own:
        mid = cid
        access = "tenant" if per_tenant else "export" if c.export else "internal"
        subject = (f"`{value_subject(topics.TELEMETRY.name)}`: the frames are `{topics.TELEMETRY.name}`'s own bytes"
                   if per_tenant else f"`{value_subject(t.name)}`")
        lines = [t.doc[0].upper() + t.doc[1:] + ".", "",
                 f"- **Key**: {c.key}.",
                 f"- **Value**: `{t.record}` (subject {subject}).",
                 f"- **Written by**: {'; '.join(c.writers)}.",
                 f"- **Read by**: {'; '.join(c.readers)}.",
                 f"- **Data engineers**: {_access_line(c, per_tenant)}."]
        topic_config: dict[str, Any] = {"cleanup.policy": ["compact" if t.compact else "delete"]}
        if not t.compact:
            topic_config["retention.ms"] = t.retention_ms
        kafka: dict[str, Any] = {} if per_tenant else {"topic": t.name}  # a template names no one topic
        channels[cid] = {
            "address": t.name,
            "title": t.name,
            "description": "\n".join(lines),
            "messages": {mid: {"$ref": f"#/components/messages/{mid}"}},
            "tags": [{"name": access}],
            "bindings": {"kafka": {**kafka, "partitions": t.partitions or default_partitions,
                                   "topicConfiguration": topic_config, "bindingVersion": KAFKA_BINDING}},
            "x-fleetstream-writers": list(c.writers),
            "x-fleetstream-readers": list(c.readers),
        }
        if per_tenant:
            channels[cid]["parameters"] = {"tenant_id": {
                "description": "the tenant's UUID; a tenant's Kafka credentials read only their own tenant's topic"}}
        operations[f"write-{cid}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"{', '.join(c.writers)} write {t.name}.",
            "messages": [{"$ref": f"#/channels/{cid}/messages/{mid}"}],
        }
        if c.export:
            operations[f"read-{cid}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": (f"A tenant's data engineer, with the tenant's Kafka credentials, reads {t.name}."
                            if per_tenant else
                            f"A data engineer's consumer, with platform credentials, reads {t.name}."),
                "tags": [{"name": access}],
                "messages": [{"$ref": f"#/channels/{cid}/messages/{mid}"}],
            }
        schema = load_schema(t.record)
        schemas.setdefault(t.record, {"schemaFormat": AVRO_FORMAT, "schema": schema})
        messages[mid] = {
            "name": schema["name"],
            "title": f"{t.record} on {t.name}",
            "contentType": "application/vnd.apache.avro+binary",
            "payload": {"$ref": f"#/components/schemas/{t.record}"},
            # a tenant's topic carries the telemetry subject's ids (looked up by id, not by the topic's name)
            "bindings": {"kafka": {"key": {"type": "string", "description": c.key},
                                   "schemaIdLocation": "payload", "schemaIdPayloadEncoding": "confluent",
                                   **({} if per_tenant else {"schemaLookupStrategy": "TopicIdStrategy"}),
                                   "bindingVersion": KAFKA_BINDING}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "fleetstream Kafka topics", "version": "1.0.0", "description": DESCRIPTION,
                 "tags": [{"name": "export", "description": "shared by all tenants: data engineers with platform "
                                                         "credentials may read it"},
                          {"name": "tenant", "description": "one tenant's own topic: that tenant's Kafka credentials "
                                                         "read it"},
                          {"name": "internal", "description": "the platform's own plumbing"}]},
        "servers": {"local": {
            "host": LOCAL_KAFKA, "protocol": "kafka", "protocolVersion": "4.4.0",
            "description": "the local stack (`make up`); production: the deployment's brokers and registry",
            "bindings": {"kafka": {"schemaRegistryUrl": LOCAL_REGISTRY, "schemaRegistryVendor": "confluent",
                                   "bindingVersion": KAFKA_BINDING}}}},
        "defaultContentType": "application/vnd.apache.avro+binary",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _access_line(c: TopicContract, per_tenant: bool) -> str:
    if per_tenant:
        return ("the tenant's own engineers read it with the tenant's Kafka credentials, consumer groups under "
                "`tenant.{tenant_id}.`")
    if c.export:
        return "may read it with platform credentials (every tenant's records; tenant credentials cannot)"
    return "internal: " + c.why_internal


class _Dumper(yaml.SafeDumper):
    """Multi-line descriptions as YAML block text, so the file reads like the Markdown it holds."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                             style="|" if "\n" in s else None))


def render(default_partitions: int = DEFAULT_PARTITIONS) -> str:
    """The document as ``docs/asyncapi.yaml`` holds it."""
    header = "# Generated by `fleetstream schemas asyncapi` from schemas/ (adr/0142). Do not edit by hand.\n"
    return header + yaml.dump(build(default_partitions), Dumper=_Dumper, sort_keys=False, width=110,
                              allow_unicode=True)
