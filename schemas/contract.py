"""Who writes and who reads each topic, what its key holds, and whether data engineers may read it: the parts
of the published topic contract (``docs/asyncapi.yaml``, adr/0142) that ``schemas.topics`` does not hold.

A topic of ``topics.ALL`` without an entry here fails the generator (and its test): a new topic is published
with its contract or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import topics

DEVICE_KEY = "UTF-8 `tenant:device` (tenant UUID, colon, device id)"


@dataclass(frozen=True)
class TopicContract:
    key: str
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    # may a data engineer read it (shared topics: with platform read credentials; a tenant's own topic: with the
    # tenant's credentials), or is it internal, and why
    export: bool
    why_internal: str = ""


CONNECTORS = "connectors (MQTT, HTTP ingest, CoAP, Modbus, OPC UA)"

CONTRACTS: dict[str, TopicContract] = {
    topics.TELEMETRY_RAW.name: TopicContract(
        DEVICE_KEY, (CONNECTORS,), ("streams: validate",), export=False,
        why_internal="not yet validated against the device registry; read `fleetstream.telemetry` instead"),
    topics.TELEMETRY.name: TopicContract(
        DEVICE_KEY, ("streams: validate",),
        ("sinks: ClickHouse telemetry", "streams: device-activity (status, rules)", "gateway: live hub"), export=True),
    topics.DEVICE_EVENTS.name: TopicContract(
        DEVICE_KEY, (CONNECTORS,),
        ("sinks: ClickHouse device_events", "streams: device-activity", "gateway: status updater, live hub"),
        export=True),
    topics.COMMANDS.name: TopicContract(
        DEVICE_KEY, ("streams: commands agent",), ("connectors: command router", "sinks: ClickHouse command_history"),
        export=True),
    topics.COMMAND_ACKS.name: TopicContract(
        DEVICE_KEY, (CONNECTORS, "connectors: MQTT downlink"),
        ("streams: commands agent", "sinks: ClickHouse command_history", "gateway: OTA campaign runner"), export=True),
    topics.SHADOW_UPDATES.name: TopicContract(
        DEVICE_KEY, ("gateway: shadow API", "connectors: MQTT downlink"), ("streams: shadows agent",), export=False,
        why_internal="requests to the shadow agent; the resulting documents are `fleetstream.shadows`"),
    topics.ALERTS.name: TopicContract(
        DEVICE_KEY, ("streams: rules agent", "gateway: alerts API (acknowledge)"),
        ("sinks: ClickHouse alerts", "gateway: streams client, live hub"), export=True),
    topics.REGISTRY.name: TopicContract(
        DEVICE_KEY + "; a tombstone deletes the device", ("gateway: outbox relay (device registry)",),
        ("connectors: registry view", "streams: registry view"), export=False,
        why_internal="platform configuration (device credentials' public keys); the API serves devices"),
    topics.TENANTS.name: TopicContract(
        "UTF-8 tenant UUID", ("gateway: outbox relay (tenants)",), ("streams: registry view", "connectors"),
        export=False, why_internal="platform configuration"),
    topics.DEVICE_TYPES.name: TopicContract(
        "UTF-8 `tenant:device_type`; a tombstone deletes the declarations", ("gateway: outbox relay (device types API)",),
        ("streams: validate (typed metrics)",), export=False,
        why_internal="tenant configuration (metric declarations); the API serves device types"),
    topics.RULES.name: TopicContract(
        "UTF-8 `tenant:rule`", ("gateway: outbox relay (rules API)",), ("streams: rules view",), export=False,
        why_internal="tenant rule definitions; the API serves them"),
    topics.DEAD_LETTER.name: TopicContract(
        DEVICE_KEY + " when known, else none", (CONNECTORS, "streams: validate", "connectors: MQTT downlink"),
        ("operators (`fleetstream topics tail`)",), export=False,
        why_internal="refused input holds raw, unvalidated bytes, possibly hostile; for operators"),
    topics.COMMAND_REQUESTS.name: TopicContract(
        DEVICE_KEY, ("gateway: commands API, OTA campaign runner", "streams: rules agent (command actions)"),
        ("streams: commands agent",), export=False,
        why_internal="requests to the commands agent; what is sent is `fleetstream.commands`"),
    topics.COMMAND_STATES.name: TopicContract(
        "UTF-8 `tenant:device:command_id` (on the device's partition)", ("streams: commands agent",),
        ("gateway: streams client",), export=True),
    topics.ACTION_OUTCOMES.name: TopicContract(
        DEVICE_KEY, ("streams: rules agent",), ("operators",), export=True),
    topics.SHADOWS.name: TopicContract(
        DEVICE_KEY, ("streams: shadows agent",), ("gateway: streams client", "connectors: MQTT downlink"),
        export=True),
}


# a tenant's own topic, one per tenant (its address is a template): never all tenants' records in one place
TENANT_CONTRACTS: dict[str, TopicContract] = {
    topics.TENANT_EXPORT.name: TopicContract(
        "UTF-8 `tenant:device` (tenant UUID, colon, device id; the tenant is always the topic's)",
        ("streams: validate (every validated reading of the tenant while it exports its telemetry: "
         "`PUT /v1/kafka-export`, adr/0146)", "streams: rules agent (`republish` actions, adr/0056)"),
        ("the tenant's data engineers, with the tenant's Kafka credentials (`POST /v1/kafka-credentials`, adr/0145)",),
        export=True),
}


def contract(topic: str) -> TopicContract:
    try:
        return CONTRACTS[topic]
    except KeyError:
        raise KeyError(f"topic {topic} has no contract in schemas/contract.py") from None
