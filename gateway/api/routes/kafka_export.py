"""A tenant's continuous Kafka export (adr/0146): its validated telemetry copied to its own topic, which its
data engineers read with the tenant's Kafka credentials (adr/0145). The tenant is the token's."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import KafkaCredentialsWrite, KafkaExportDep
from gateway.errors import ERROR_RESPONSES, documented
from gateway.models.kafka_export import KafkaExportPublic, KafkaExportUpdate

router = APIRouter(tags=["kafka-credentials"], responses=ERROR_RESPONSES)


@router.get("/kafka-export", response_model=KafkaExportPublic,
            summary="Whether the tenant's validated telemetry is copied to its export topic")
def get_kafka_export(principal: KafkaCredentialsWrite, svc: KafkaExportDep) -> KafkaExportPublic:
    return KafkaExportPublic(**svc.get(principal.tenant_id))


@router.put("/kafka-export", response_model=KafkaExportPublic,
            summary="Switch the copy of the tenant's validated telemetry to its export topic on or off (the topic "
                    "is created first)",
            responses=documented({503: "Kafka did not create the export topic; nothing was changed"}))
def put_kafka_export(body: KafkaExportUpdate, principal: KafkaCredentialsWrite,
                     svc: KafkaExportDep) -> KafkaExportPublic:
    return KafkaExportPublic(**svc.set(principal, body.telemetry))
