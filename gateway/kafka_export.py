"""A tenant's continuous Kafka export (adr/0146): switched on, every validated reading of the tenant is copied by
the validate agent to the tenant's own topic ``fleetstream.export.<tenant_id>``, which the tenant's Kafka
credentials (adr/0145) may read.

The switch is a column of the tenant's row; the tenant entry on the compacted ``fleetstream.tenants`` topic,
which the stream agents follow, is written from that row through the outbox in the same transaction (adr/0108),
so Postgres and Kafka never disagree for longer than the relay takes. The topic is created before the switch is
committed: by the time any agent reads "on", the topic exists, and a credential never meets a missing topic.
"""

from __future__ import annotations

import logging
import threading

from gateway.auth.tokens import Principal
from gateway.crud import audit
from gateway.crud import tenants as tenants_crud
from gateway.db.session import Database
from gateway.errors import ApiError, not_found
from gateway.outbox import Outbox
from gateway.registry_publisher import enqueue_tenant
from runtime.kafka import KafkaClients, ensure_tenant_export_topic
from schemas.topics import tenant_export_topic

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 30.0


class ExportTopics:
    """Creates tenants' export topics through the platform's admin client (made at first use)."""

    def __init__(self, kafka: KafkaClients, partitions: int, timeout_s: float = ADMIN_TIMEOUT_S):
        self.kafka, self.partitions, self.timeout_s = kafka, partitions, timeout_s
        self._admin = None
        self._lock = threading.Lock()

    def ensure(self, tenant_id: str) -> bool:
        """True if this call created it; raises when Kafka did not answer."""
        with self._lock:
            if self._admin is None:
                self._admin = self.kafka.admin(client_id="fleetstream-kafka-export")
            admin = self._admin
        return ensure_tenant_export_topic(self.kafka, admin, tenant_id, self.partitions, self.timeout_s)


class KafkaExport:
    def __init__(self, db: Database, outbox: Outbox, topics: ExportTopics):
        self.db, self.outbox, self.topics = db, outbox, topics

    def get(self, tenant: str) -> dict:
        with self.db.tenant_tx(tenant) as conn:
            row = tenants_crud.get_own(conn, tenant_id=tenant)
        if row is None:
            raise not_found(f"tenant {tenant!r}")
        return _view(row)

    def set(self, principal: Principal, telemetry: bool) -> dict:
        tenant = principal.tenant_id
        if telemetry:  # before the switch is committed: nothing ever copies to, or reads, a missing topic
            try:
                self.topics.ensure(tenant)
            except Exception as exc:
                log.warning("tenant %s: export topic not created: %s", tenant, exc)
                raise ApiError(503, "kafka_unavailable", "Kafka did not create the export topic; nothing was "
                                                         "changed, try again") from exc
        with self.db.tenant_tx(tenant) as conn:
            before = tenants_crud.get_own(conn, tenant_id=tenant, for_update=True)
            if before is None:
                raise not_found(f"tenant {tenant!r}")
            if before["export_telemetry"] == telemetry:
                return _view(before)
            row = tenants_crud.set_export_telemetry(conn, tenant_id=tenant, on=telemetry)
            published = enqueue_tenant(conn, row)
            audit.record(conn, tenant_id=tenant, actor=principal.client_id,
                         action=f"kafka_export.telemetry_{'on' if telemetry else 'off'}", target=f"tenant:{tenant}",
                         details={"topic": tenant_export_topic(tenant), "telemetry": telemetry})
        self.outbox.wait([published])
        return _view(row)


def _view(row: dict) -> dict:
    tenant = str(row["id"])
    return {"telemetry": bool(row["export_telemetry"]), "topic": tenant_export_topic(tenant)}
