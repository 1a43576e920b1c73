"""The OPC-UA site file (see ``examples/site.yaml``): servers (one session each), the devices a server's
nodes belong to, and each device's node map (node id → metric), writable nodes and callable methods."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..device_commands import CommandConfig
from ..siteconfig import SiteConfigBase, check_device_commands, check_unique_devices


def split_path(path: str | Sequence[str]) -> list[str]:
    if isinstance(path, str):
        return [p for p in path.split("/") if p]
    return list(path)


def describe(node_id: str | None, browse_path: str | Sequence[str] | None) -> str:
    if node_id is not None:
        return node_id
    return "/" + "/".join(split_path(browse_path or []))



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


# a node id as OPC-UA writes it: optional ns=<index>; or nsu=<URI>; then i=, s=, g= or b= (adr/0150)
_NODE_ID = r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$"


class NodeConfig(BaseModel):
    """One metric, addressed by ``node_id`` or by ``browse_path`` (exactly one; see ``addressing.py``)."""

    model_config = ConfigDict(extra="forbid")
    node_id: str | None = Field(None, pattern=_NODE_ID,
                                description='"ns=2;s=Boiler.Temp" or "nsu=urn:plant;s=Boiler.Temp"')
    browse_path: str | list[str] | None = Field(
        None, description='"/Objects/2:Boiler7/2:Pressure", or a list of segments (segments may be nsu=<URI>;Name)')
    metric: str = Field(min_length=1, max_length=128)
    writable: bool = False

    @model_validator(mode="after")
    def _one_address(self) -> NodeConfig:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("node_id/browse_path: give exactly one")
        if isinstance(self.browse_path, str) and not self.browse_path.startswith("/"):
            raise ValueError("browse_path: a path string starts at the root: /Objects/…")
        if self.browse_path is not None and not [p for p in (
                self.browse_path.split("/") if isinstance(self.browse_path, str) else self.browse_path) if p]:
            raise ValueError("browse_path: is empty")
        return self

    @property
    def address(self) -> str:
        return describe(self.node_id, self.browse_path)


class MethodConfig(BaseModel):
    """A command ``name`` calls ``method_id`` on ``object_id`` with the command's ``args``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    object_id: str = Field(pattern=_NODE_ID)
    method_id: str = Field(pattern=_NODE_ID)


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(pattern=_ID)
    nodes: list[NodeConfig] = Field(min_length=1)
    methods: list[MethodConfig] = []
    device_type: str | None = Field(None, description="a key of the site's device_types: its named commands")
    commands: list[CommandConfig] = []

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
    online_every_s: float = Field(60.0, ge=1, description="while the subscription is healthy (data or keep-alives "
                                  "arrive), each device is reported ONLINE this often, so unchanged values do not "
                                  "make it look offline; keep it below the device's offline timeout")
    devices: list[DeviceConfig] = Field(min_length=1)

    @property
    def name(self) -> str:
        return self.endpoint


class OpcUaSiteConfig(SiteConfigBase):
    servers: list[ServerConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_devices(self) -> OpcUaSiteConfig:
        check_unique_devices("servers", self.servers)
        check_device_commands("servers", self.servers, self.device_types, with_methods=True)
        return self
