"""Claim tokens, self-provisioning and bulk import."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas import metric_types
from schemas.strict import Text

from .devices import DEVICE_ID_PATTERN, Attributes, Tag


class ClaimTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "factory line 3", "expires_in_s": 86400, "max_uses": 500, "device_type": "meter", "tags": ["batch-7"]}]})
    name: Text = Field("", max_length=100)
    expires_in_s: int = Field(86400, ge=60, le=365 * 86400)
    max_uses: int = Field(1, ge=1, le=1_000_000)
    device_type: str | None = Field(None, pattern=DEVICE_ID_PATTERN, description="given to every device it provisions")
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class ClaimTokenPublic(BaseModel):
    id: str
    name: str
    expires_at: dt.datetime
    max_uses: int
    used_count: int
    device_type: str | None
    tags: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, row: dict) -> ClaimTokenPublic:
        return cls(**{**{k: row[k] for k in cls.model_fields if k != "id"}, "id": str(row["id"])})


class ClaimTokenCreated(ClaimTokenPublic):
    claim_token: str = Field(description="shown once; put it on the devices (factory image, QR code)")


class ClaimTokenList(BaseModel):
    data: list[ClaimTokenPublic]
    count: int


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"claim_token": "fsct_…", "device_id": "meter-000123",
         "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\n…\n-----END CERTIFICATE REQUEST-----\n"}]})
    claim_token: Text = Field(min_length=8, max_length=200)
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    csr_pem: Text = Field(max_length=16_000)


class ProvisionResponse(BaseModel):
    tenant_id: str
    device_id: str
    certificate_pem: str = Field(description="device certificate followed by the tenant CA")
    ca_pem: str = Field(description="platform root CA (trust anchor for the broker)")
    serial: str
    mqtt_host: str
    mqtt_port: int
    topics: dict[str, str]


class ImportRowResult(BaseModel):
    line: int
    device_id: str
    status: str = Field(description="created | error")
    code: str | None = None
    message: str | None = None


class ImportReport(BaseModel):
    created: int
    failed: int
    rows: list[ImportRowResult]


class MetricDeclaration(BaseModel):
    """What a reading's value of this metric must be; a reading that breaks it is refused (reason code
    ``metric_type``, ``metric_range`` or ``metric_enum``) and listed under ``/rejections`` (adr/0182)."""
    model_config = ConfigDict(extra="forbid")
    type: Literal["number", "integer", "boolean", "string"]
    unit: str | None = Field(None, max_length=32, description="documentation only, e.g. degC, %, kWh")
    min: float | None = Field(None, description="number/integer metrics: smallest allowed value")
    max: float | None = Field(None, description="number/integer metrics: largest allowed value")
    enum: list[bool | float | str] | None = Field(None, max_length=metric_types.MAX_ENUM,
                                                  description="the only values allowed")

    @model_validator(mode="after")
    def _consistent(self) -> MetricDeclaration:
        problem = metric_types.declaration_problem("", self.model_dump())
        if problem:
            raise ValueError(problem.removeprefix("metric '': "))
        return self


MetricName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Metrics = Annotated[dict[MetricName, MetricDeclaration], Field(max_length=metric_types.MAX_METRICS)]


class DeviceTypeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "meter", "description": "smart water meter", "default_tags": ["metering"],
         "default_attributes": {"sampling_s": 60},
         "metrics": {"flow": {"type": "number", "unit": "l/min", "min": 0, "max": 500},
                     "valve": {"type": "string", "enum": ["open", "closed"]}}}]})
    name: str = Field(pattern=DEVICE_ID_PATTERN)
    description: Text = Field("", max_length=500)
    default_tags: list[Tag] = Field(default_factory=list, max_length=50)
    default_attributes: Attributes = Field(default_factory=dict)
    metrics: Metrics = Field(default_factory=dict, description="declared metrics; undeclared ones are not checked")


class DeviceTypeMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"metrics": {"temperature": {"type": "number", "unit": "degC", "min": -40, "max": 125}}}]})
    metrics: Metrics


class DeviceTypePublic(BaseModel):
    name: str
    description: str
    default_tags: list[str]
    default_attributes: dict
    metrics: dict[str, MetricDeclaration] = Field(default_factory=dict)
    created_at: dt.datetime

    @classmethod
    def of(cls, row: dict) -> DeviceTypePublic:
        return cls(**{k: row[k] for k in cls.model_fields})


class DeviceTypeList(BaseModel):
    data: list[DeviceTypePublic]
    count: int
