"""A tenant's continuous Kafka export (adr/0146): what is switched, what is shown."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class KafkaExportUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"telemetry": True}]})
    telemetry: bool = Field(description="copy each validated reading of the tenant to its export topic")


class KafkaExportPublic(BaseModel):
    telemetry: bool = Field(description="whether the tenant's validated readings are copied to `topic`")
    topic: str = Field(description="the tenant's export topic, which its Kafka credentials read; it also holds its "
                                   "rules' republished readings")
