"""The Modbus site file (see ``examples/site.yaml``): gateways (one TCP peer each), the devices behind a
gateway by unit id, and each device's register map. Cross-field rules read ``DATA_TYPE_SPECS``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..device_commands import CommandConfig
from ..siteconfig import SiteConfigBase, check_device_commands, check_unique_devices
from .registers import (
    DATA_TYPE_SPECS,
    MAX_STRING_REGISTERS,
    ByteOrder,
    DataType,
    Kind,
    RegisterType,
    WordOrder,
)

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class PointConfig(BaseModel):
    """One metric read from the register map."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(min_length=1, max_length=128)
    address: int = Field(ge=0, le=65535, description="0-based protocol address (register 40001 is 0)")
    function: RegisterType = RegisterType.HOLDING
    type: DataType = DataType.UINT16
    byte_order: ByteOrder = ByteOrder.BIG
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    interval_s: float | None = Field(None, gt=0, description="overrides the device's interval")
    writable: bool = False
    length: int | None = Field(None, ge=1, le=MAX_STRING_REGISTERS, description="type string: registers it spans")
    bit: int | None = Field(None, ge=0, le=15, description="type bit: which bit of the register (0: least significant)")

    @model_validator(mode="after")
    def _fits_table(self) -> PointConfig:
        spec = DATA_TYPE_SPECS[self.type]
        if (self.type is DataType.STRING) != (self.length is not None):
            raise ValueError("length: required with type string, and only there")
        if (self.type is DataType.BIT) != (self.bit is not None):
            raise ValueError("bit: required with type bit, and only there")
        if self.writable and not spec.writable:
            raise ValueError(f"writable: type {self.type.value} cannot be written (read-modify-write of a register "
                             "would race the device)")
        if spec.kind in (Kind.STRING, Kind.REGISTER_BIT) and (self.scale != 1 or self.offset != 0):
            raise ValueError(f"scale/offset: do not apply to type {self.type.value}")
        if self.function not in spec.register_types:
            allowed = ", ".join(sorted(t.value for t in spec.register_types))
            raise ValueError(f"function {self.function.value} cannot hold type {self.type.value} (use {allowed})")
        if self.address + self.registers > 65536:
            raise ValueError(f"address {self.address} with type {self.type.value} runs past 65535")
        if self.writable and not self.function.writable:
            raise ValueError(f"writable: function {self.function.value} cannot be written (only holding, coil)")
        if self.scale == 0:
            raise ValueError("scale: must not be 0")
        if not spec.orders_apply and (self.byte_order is not ByteOrder.BIG or self.word_order is not WordOrder.BIG):
            raise ValueError(f"byte_order/word_order: do not apply to type {self.type.value}")
        if spec.kind is Kind.STRING and self.word_order is not WordOrder.BIG:
            raise ValueError("word_order: does not apply to type string (text runs register by register)")
        return self

    @property
    def registers(self) -> int:
        return self.length or DATA_TYPE_SPECS[self.type].registers


class DeviceConfig(BaseModel):
    """One Modbus unit (slave) behind a gateway; it is one fleetstream device of the site's tenant."""

    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(pattern=_ID)
    unit_id: int = Field(ge=0, le=255)
    interval_s: float = Field(5.0, gt=0)
    offline_after_failures: int = Field(3, ge=1, description="polls in a row that read nothing before OFFLINE")
    device_type: str | None = Field(None, description="a key of the site's device_types: its named commands")
    commands: list[CommandConfig] = []
    points: list[PointConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_metrics(self) -> DeviceConfig:
        seen: set[str] = set()
        for p in self.points:
            if p.metric in seen:
                raise ValueError(f"points: metric {p.metric!r} appears twice")
            seen.add(p.metric)
        return self


class GatewayConfig(BaseModel):
    """One Modbus TCP peer (a PLC, or a serial gateway fronting several units)."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    timeout_s: float = Field(3.0, gt=0)
    frame_gap_s: float = Field(0.0, ge=0, description="pause between requests; slow serial gateways need it")
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_gap: int = Field(0, ge=0, le=100, description="unused registers a batched read may span")
    devices: list[DeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_units(self) -> GatewayConfig:
        units: dict[int, str] = {}
        for d in self.devices:
            if d.unit_id in units:
                raise ValueError(f"devices: unit_id {d.unit_id} is used by {units[d.unit_id]!r} and {d.device_id!r}")
            units[d.unit_id] = d.device_id
        return self


class ModbusSiteConfig(SiteConfigBase):
    gateways: list[GatewayConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_devices(self) -> ModbusSiteConfig:
        check_unique_devices("gateways", self.gateways)
        check_device_commands("gateways", self.gateways, self.device_types, with_methods=False)
        return self
