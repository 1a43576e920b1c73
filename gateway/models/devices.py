"""Devices as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from schemas.strict import JsonObject, check_text

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TAG_PATTERN = r"^[^\s,;\x00]{1,64}$"
Status = Literal["provisioned", "active", "suspended", "decommissioned"]
Tag = Annotated[str, Field(pattern=TAG_PATTERN), AfterValidator(check_text)]
"""1-64 characters, no whitespace, comma or semicolon (CSV import splits on them), valid Unicode."""
MAX_ATTRIBUTES_BYTES = 64 * 1024  # a device's registry record (with its attributes) must fit a Kafka message


def _attributes_size(value: dict) -> dict:
    import json

    if len(json.dumps(value, separators=(",", ":"))) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes take at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
    return value


Attributes = Annotated[JsonObject, AfterValidator(_attributes_size)]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"device_id": "boiler-17", "device_type": "boiler", "tags": ["site-a", "floor-2"],
         "attributes": {"serial_number": "BX-0042", "firmware": "1.4.2"}}]})
    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="unique within the tenant; part of MQTT topics")
    device_type: str | None = Field(None, pattern=DEVICE_ID_PATTERN)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    attributes: Attributes = Field(default_factory=dict)


class DeviceUpdate(BaseModel):
    """Only what is given changes. Attributes merge; an attribute set to null is removed. Tags replace."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"attributes": {"firmware": "1.5.0", "obsolete_key": None}, "tags": ["site-a"]}]})
    device_type: str | None = Field(None, pattern=DEVICE_ID_PATTERN)
    tags: list[Tag] | None = Field(None, max_length=50)
    attributes: Attributes | None = None


class DevicePublic(BaseModel):
    device_id: str
    status: Status
    device_type: str | None
    tags: list[str]
    attributes: dict[str, Any]
    online: bool
    last_seen: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    rejections: dict[str, int] | None = Field(
        None, description="refused input per reason code over the last 14 days (GET /v1/devices/{id} only; "
                          "the entries: GET /v1/devices/{id}/rejections)")

    @classmethod
    def of(cls, row: dict, rejections: dict[str, int] | None = None) -> DevicePublic:
        return cls(**{k: row[k] for k in cls.model_fields if k != "rejections"}, rejections=rejections)


class DeviceList(BaseModel):
    data: list[DevicePublic]
    count: int
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")


class MqttEndpoint(BaseModel):
    host: str
    port: int
    protocol: Literal["mqtts"] = "mqtts"
    mqtt_versions: list[str] = ["5.0", "3.1.1"]
    authentication: str = "X.509 client certificate from this tenant's CA (CN = <tenant_id>.<device_id>)"
    client_id: str
    topics: dict[str, str]


class HttpEndpoint(BaseModel):
    ingest_url: str
    method: Literal["POST"] = "POST"
    authentication: str = "Authorization: Bearer <ES256 JWT the device signs; aud=fleetstream-ingest, kid=key id>"


class CoapEndpoint(BaseModel):
    url: str
    authentication: str = "a device JWT (as for HTTP) in the request"


class ConnectionInfo(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "tenant_id": "6f1c…", "device_id": "boiler-17",
        "mqtt": {"host": "mqtt.example.com", "port": 8883, "protocol": "mqtts", "client_id": "6f1c….boiler-17",
                 "topics": {"telemetry": "fs/6f1c…/boiler-17/telemetry"}},
        "http": {"ingest_url": "https://api.example.com/v1/ingest"},
        "coap": {"url": "coap://coap.example.com:5683/telemetry"},
        "docs": {"mqtt": "docs/devices/mqtt.md", "examples": "docs/devices/examples/"}}]})
    tenant_id: str
    device_id: str
    mqtt: MqttEndpoint
    http: HttpEndpoint
    coap: CoapEndpoint
    ca_certificate_url: str
    docs: dict[str, str] = Field(default_factory=dict, description=(
        "the device contract per protocol and the worked examples (docs/devices/ of the fleetstream repository, "
        "or where the operator publishes them: setting device_docs_url)"))
    payload_format: str = '{"ts": <epoch ms>, "values": {"temperature": 21.5}} or a list of them'
