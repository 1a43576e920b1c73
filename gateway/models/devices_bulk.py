"""``POST /v1/devices/bulk``: many devices (and their certificates) in one call, one broker round trip."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .devices import DeviceCreate

MAX_BULK_DEVICES = 1000  # a response with keys and certificates stays a few MB


class BulkDeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"devices": [{"device_id": "meter-1", "device_type": "meter"}, {"device_id": "meter-2"}],
         "issue_certificates": True}]})
    devices: list[DeviceCreate] = Field(min_length=1, max_length=MAX_BULK_DEVICES)
    issue_certificates: bool = Field(False, description="generate a key pair and certificate for each new device "
                                                        "(the private key is returned once, here)")


class BulkDeviceResult(BaseModel):
    index: int = Field(description="position in the request")
    device_id: str
    status: str = Field(description="created | error")
    code: str | None = None
    message: str | None = None
    certificate_pem: str | None = Field(None, description="device certificate followed by the tenant CA")
    private_key_pem: str | None = None
    serial: str | None = None


class BulkDeviceReport(BaseModel):
    created: int
    failed: int
    ca_pem: str = Field(description="platform root CA (trust anchor for the broker)")
    devices: list[BulkDeviceResult]
