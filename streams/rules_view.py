"""Every tenant's enabled rules, as every streams worker sees them: followed from the compacted
``fleetstream.rules`` topic (key ``tenant:rule_id``, JSON value, tombstone on delete) by a plain consumer.

Rules are looked up by tenant only: the rules agent evaluates a reading against the rules of the reading's
own tenant (taken from the record key), so one tenant's rules never see another tenant's data (adr/0055).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from schemas import topics

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


class RulesView:
    def __init__(self, bootstrap: str, topic: str = topics.RULES.name):
        self.bootstrap, self.topic = bootstrap, topic
        self.by_tenant: dict[str, dict[str, Rule]] = {}
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rules-view", daemon=True)

    def start(self) -> RulesView:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def rules_of(self, tenant_id: str) -> dict[str, Rule]:
        return self.by_tenant.get(tenant_id) or {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        tenant, _, rule_id = key.decode().partition(":")
        mine = self.by_tenant.setdefault(tenant, {})
        if value is None:
            mine.pop(rule_id, None)
            return
        try:
            doc = json.loads(value)
            d = doc["document"]
            rule = Rule(tenant, rule_id, int(doc["version"]), d["name"], d.get("scope", {}), d["condition"],
                        tuple(d["actions"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("rules view: ignoring malformed rule %r: %s", key, exc)
            return
        if doc.get("tenant_id") != tenant:
            log.warning("rules view: ignoring rule %r whose body names another tenant", key)
            return
        if doc.get("enabled", True):
            mine[rule_id] = rule
        else:
            mine.pop(rule_id, None)

    def _run(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fleetstream-rules-view",
                      "enable.auto.commit": False})
        try:
            while True:
                try:
                    md = c.list_topics(self.topic, timeout=30).topics[self.topic]
                    tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in md.partitions]
                    ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
                    break
                except KafkaException as exc:
                    log.warning("rules view: waiting for the topic: %s", exc)
                    if self._stop.wait(1):
                        return
            c.assign(tps)
            pending = {p for p, hi in ends.items() if hi > 0}
            if not pending:
                self.caught_up.set()
            while not self._stop.is_set():
                for m in c.consume(500, 0.2):
                    if m.error():
                        continue
                    self.apply(m.key(), m.value())
                    if pending and m.offset() + 1 >= ends.get(m.partition(), 0):
                        pending.discard(m.partition())
                        if not pending:
                            self.caught_up.set()
        except Exception:
            log.exception("rules view stopped")
        finally:
            c.close()
