"""Every tenant's enabled rules, as every streams worker sees them: followed from the compacted
``fleetstream.rules`` topic (key ``tenant:rule_id``, a ``rule_entry`` record carrying the JSON rule document,
tombstone on delete) by a plain consumer.

Rules are looked up by tenant only: the rules agent evaluates a reading against the rules of the reading's
own tenant (taken from the record key), so one tenant's rules never see another tenant's data (adr/0055).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from runtime.compacted import CompactedFollower
from runtime.kafka import KafkaLike
from schemas import ValueDeserializationError, codec, topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rule:
    tenant_id: str
    rule_id: str
    version: int
    name: str
    scope: dict
    condition: dict
    actions: tuple[dict, ...]

    @property
    def inactivity(self) -> bool:
        return self.condition["type"] == "inactivity"


class RulesView(CompactedFollower):
    def __init__(self, kafka: KafkaLike, topic: str = topics.RULES.name):
        super().__init__(kafka, [topic], name="rules-view", batch=500)
        self.by_tenant: dict[str, dict[str, Rule]] = {}

    def rules_of(self, tenant_id: str) -> dict[str, Rule]:
        return self.by_tenant.get(tenant_id) or {}

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        tenant, _, rule_id = key.decode().partition(":")
        mine = self.by_tenant.setdefault(tenant, {})
        if value is None:
            mine.pop(rule_id, None)
            return
        try:
            doc = codec("rule_entry").decode(value)
            d = json.loads(doc["document_json"])
            rule = Rule(tenant, rule_id, int(doc["version"]), d["name"], d.get("scope", {}), d["condition"],
                        tuple(d["actions"]))
        except (ValueDeserializationError, ValueError, KeyError, TypeError) as exc:
            log.warning("rules view: ignoring malformed rule %r: %s", key, exc)
            return
        if doc.get("tenant_id") != tenant:
            log.warning("rules view: ignoring rule %r whose body names another tenant", key)
            return
        if doc.get("enabled", True):
            mine[rule_id] = rule
        else:
            mine.pop(rule_id, None)
