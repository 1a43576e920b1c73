"""A tenant's own Kafka credentials for its data engineers (adr/0145): issue (the password is shown once),
list, revoke. The tenant is the token's; the ACLs name only that tenant's export topic(s) and group prefix."""

from __future__ import annotations

from fastapi import APIRouter, status

from gateway.api.deps import KafkaCredentialsDep, KafkaCredentialsWrite, SettingsDep
from gateway.errors import ERROR_RESPONSES, documented
from gateway.models.kafka_credentials import (
    KafkaConnection,
    KafkaCredentialCreate,
    KafkaCredentialIssued,
    KafkaCredentialList,
    KafkaCredentialPublic,
)

router = APIRouter(tags=["kafka-credentials"], responses=ERROR_RESPONSES)


@router.post("/kafka-credentials", status_code=status.HTTP_201_CREATED, response_model=KafkaCredentialIssued,
             summary="Issue a Kafka (SASL/SCRAM-SHA-512) user that may read the tenant's export topic; the password "
                     "is shown once. 409 when the platform's Kafka has no SASL/SCRAM",
             responses=documented({409: "the platform's Kafka cannot issue tenant credentials (no SASL/SCRAM)",
                                   503: "Kafka did not complete the issue; nothing was left half-done"}))
def create_kafka_credential(body: KafkaCredentialCreate, principal: KafkaCredentialsWrite, svc: KafkaCredentialsDep,
                            s: SettingsDep) -> KafkaCredentialIssued:
    issued = svc.issue(principal, body.name)
    bootstrap, protocol = s.tenant_kafka_listener()
    conn = KafkaConnection(bootstrap=bootstrap, security_protocol=protocol, schema_registry_url=s.schema_registry_endpoint,
                           ssl_ca_pem=s.kafka_ssl_ca_file.read_text() if s.kafka_ssl_ca_file else None)
    return KafkaCredentialIssued(**KafkaCredentialPublic.of(issued.row).model_dump(), password=issued.password,
                                 connection=conn)


@router.get("/kafka-credentials", response_model=KafkaCredentialList,
            summary="The tenant's Kafka credentials (never their passwords)")
def list_kafka_credentials(principal: KafkaCredentialsWrite, svc: KafkaCredentialsDep) -> KafkaCredentialList:
    rows = svc.list(principal.tenant_id)
    return KafkaCredentialList(data=[KafkaCredentialPublic.of(r) for r in rows], count=len(rows))


@router.get("/kafka-credentials/{credential_id}", response_model=KafkaCredentialPublic, summary="One Kafka credential")
def get_kafka_credential(credential_id: str, principal: KafkaCredentialsWrite,
                         svc: KafkaCredentialsDep) -> KafkaCredentialPublic:
    return KafkaCredentialPublic.of(svc.get(principal.tenant_id, credential_id))


@router.delete("/kafka-credentials/{credential_id}", response_model=KafkaCredentialPublic,
               summary="Revoke a Kafka credential: its ACLs go first (reads stop at once), then its SCRAM login",
               responses=documented({503: "Kafka did not confirm the removal yet; it is finished by the sweep"}))
def revoke_kafka_credential(credential_id: str, principal: KafkaCredentialsWrite,
                            svc: KafkaCredentialsDep) -> KafkaCredentialPublic:
    return KafkaCredentialPublic.of(svc.revoke(principal, credential_id))
