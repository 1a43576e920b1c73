"""The OPC-UA site file (see ``examples/site.yaml``): servers (one session each), the devices a server's
nodes belong to, and each device's node map (node id → metric), writable nodes and callable methods."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..siteconfig import SiteConfigBase, check_unique_devices

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class SecurityPolicy(StrEnum):
    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"


class SecurityMode(StrEnum):
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class SecurityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: SecurityPolicy = SecurityPolicy.NONE
    mode: SecurityMode = SecurityMode.SIGN_AND_ENCRYPT
    certificate: str | None = Field(None, description="the connector's certificate (DER or PEM file)")
    private_key: str | None = Field(None, description="its private key (PEM file)")
    server_certificate: str | None = Field(None, description="pin the server's certificate (file)")
    application_uri: str = Field("urn:fleetstream:connector:opcua", description="must match the certificate's URI")

    @model_validator(mode="after")
    def _needs_keys(self) -> SecurityConfig:
        if self.policy is not SecurityPolicy.NONE and not (self.certificate and self.private_key):
            raise ValueError(f"certificate/private_key: required with policy {self.policy.value}")
        return self


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(min_length=3, description='e.g. "ns=2;i=2" or "ns=2;s=Boiler.Temp"')
    metric: str = Field(min_length=1, max_length=128)
    writable: bool = False


class MethodConfig(BaseModel):
    """A command ``name`` calls ``method_id`` on ``object_id`` with the command's ``args``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    object_id: str = Field(min_length=3)
    method_id: str = Field(min_length=3)


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(pattern=_ID)
    nodes: list[NodeConfig] = Field(min_length=1)
    methods: list[MethodConfig] = []

    @model_validator(mode="after")
    def _unique(self) -> DeviceConfig:
        metrics = [n.metric for n in self.nodes]
        dup = {m for m in metrics if metrics.count(m) > 1}
        if dup:
            raise ValueError(f"nodes: metric {sorted(dup)[0]!r} appears twice")
        return self


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(pattern=r"^opc\.tcp://", description="opc.tcp://host:port/path")
    security: SecurityConfig = SecurityConfig()
    publishing_interval_ms: int = Field(500, ge=10)
    timeout_s: float = Field(4.0, gt=0)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    devices: list[DeviceConfig] = Field(min_length=1)

    @property
    def name(self) -> str:
        return self.endpoint


class OpcUaSiteConfig(SiteConfigBase):
    servers: list[ServerConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_devices(self) -> OpcUaSiteConfig:
        check_unique_devices("servers", self.servers)
        return self
