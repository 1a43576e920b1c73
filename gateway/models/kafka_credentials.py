"""Tenant Kafka credentials (adr/0145): what is asked, what is shown once, what is listed."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.strict import Text


class KafkaCredentialCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "warehouse-loader"}]})
    name: Text = Field("", max_length=100, description="what it is for (shown in lists)")


class KafkaConnection(BaseModel):
    bootstrap: str = Field(description="the brokers to connect to (librdkafka `bootstrap.servers`)")
    security_protocol: str
    sasl_mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"
    schema_registry_url: str = Field(description="Confluent-compatible API the values' schema ids resolve against")
    ssl_ca_pem: str | None = Field(None, description="PEM of the CA that signed the brokers' TLS certificates when "
                                   "it is a private one (the local cluster's platform CA); null: a public CA or no TLS")


class KafkaCredentialPublic(BaseModel):
    id: str
    name: str
    username: str = Field(description="the SASL/SCRAM-SHA-512 user")
    status: Literal["pending", "active", "revoking", "revoked"]
    topics: list[str] = Field(description="the only topics it may read")
    group_prefix: str = Field(description="consumer group ids must start with this")
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @classmethod
    def of(cls, row: dict) -> KafkaCredentialPublic:
        return cls(id=str(row["id"]), **{k: row[k] for k in ("name", "username", "status", "topics", "group_prefix",
                                                              "created_by", "created_at", "revoked_at")})


class KafkaCredentialIssued(KafkaCredentialPublic):
    password: str = Field(description="the SCRAM password; shown once, never stored by the platform")
    connection: KafkaConnection


class KafkaCredentialList(BaseModel):
    data: list[KafkaCredentialPublic]
    count: int
