"""The platform's Kafka topics, created explicitly (never auto-created) with their policies."""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    doc: str
    record: str | None  # schemas/avro record type of its values
    compact: bool = False
    retention_ms: int = 7 * DAY_MS
    partitions: int | None = None  # None: the platform default (settings.kafka_partitions)
    extra: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": "compact" if self.compact else "delete"}
        if not self.compact:
            cfg["retention.ms"] = str(self.retention_ms)
        cfg.update(self.extra)
        return cfg


TELEMETRY_RAW = TopicSpec("fleetstream.telemetry.raw", "connectors → validate agent", "telemetry", retention_ms=3 * DAY_MS)
TELEMETRY = TopicSpec("fleetstream.telemetry", "validated, enriched telemetry → sinks, rules, live", "telemetry")
DEVICE_EVENTS = TopicSpec("fleetstream.device-events", "connection, lifecycle and connector events", "device_event")
COMMANDS = TopicSpec("fleetstream.commands", "commands to deliver to devices", "command")
COMMAND_ACKS = TopicSpec("fleetstream.command-acks", "device answers about commands", "command_ack")
SHADOW_UPDATES = TopicSpec("fleetstream.shadow-updates", "desired/reported shadow changes", "shadow_update")
ALERTS = TopicSpec("fleetstream.alerts", "alerts raised, acknowledged, cleared", "alert")
REGISTRY = TopicSpec("fleetstream.registry", "device registry, latest entry per device", "registry_entry", compact=True)
TENANTS = TopicSpec("fleetstream.tenants", "tenant status, latest entry per tenant (adr/0107)", "tenant_entry",
                    compact=True)
DEVICE_TYPES = TopicSpec("fleetstream.device-types", "device types' metric declarations, latest per type (adr/0182)",
                         "device_type_entry", compact=True)
RULES = TopicSpec("fleetstream.rules", "tenant rules, latest version per rule", "rule_entry", compact=True)
DEAD_LETTER = TopicSpec("fleetstream.dlq", "refused input with a reason and the raw bytes", "dead_letter", retention_ms=14 * DAY_MS)

# stream agents (issue 5, adr/0050): requests in, state views out (compacted, read by the gateway)
COMMAND_REQUESTS = TopicSpec("fleetstream.command-requests", "API → command agent: new commands", "command")
COMMAND_STATES = TopicSpec("fleetstream.command-states", "command agent → gateway: latest state per command", "command_state", compact=True)
ACTION_OUTCOMES = TopicSpec("fleetstream.action-outcomes", "rules agent: outcome of each webhook call", "action_outcome")
SHADOWS = TopicSpec("fleetstream.shadows", "shadow agent → gateway, downlink: latest shadow per device", "shadow_document", compact=True)

ALL = [TELEMETRY_RAW, TELEMETRY, DEVICE_EVENTS, COMMANDS, COMMAND_ACKS, SHADOW_UPDATES, ALERTS, REGISTRY, TENANTS, DEVICE_TYPES, RULES, DEAD_LETTER,
       COMMAND_REQUESTS, COMMAND_STATES, SHADOWS, ACTION_OUTCOMES]
BY_NAME = {t.name: t for t in ALL}

# A tenant's own topics (adr/0056, adr/0145, adr/0146): one per tenant, not in ALL; created when the tenant
# switches its export on or gets Kafka credentials (gateway), and by its writers before they first write.
# Tenant Kafka credentials read exactly these and commit offsets only under the tenant's consumer-group prefix.
EXPORT_PREFIX = "fleetstream.export."
# the policies of every tenant's export topic; its name is a template (``tenant_export_topic``)
TENANT_EXPORT = TopicSpec(EXPORT_PREFIX + "{tenant_id}", "one tenant's validated telemetry (when the tenant "
                          "exports it) and its rules' republished readings", "telemetry")


def tenant_export_topic(tenant_id: str) -> str:
    """A tenant's export topic: the validate agent copies its validated readings there while the tenant exports
    them (adr/0146), a rule's ``republish`` action the readings that fire it (the reading's Avro frame)."""
    return f"{EXPORT_PREFIX}{tenant_id}"


def tenant_export_topics(tenant_id: str) -> list[str]:
    """Every topic a tenant's Kafka credentials may read."""
    return [tenant_export_topic(tenant_id)]


def tenant_group_prefix(tenant_id: str) -> str:
    """Consumer groups of a tenant's Kafka credentials must start with this."""
    return f"tenant.{tenant_id}."
