"""Modbus TCP connector: polls register maps of a site's gateways (pip extra ``fleetstream[modbus]``)."""

from .config import DeviceConfig, GatewayConfig, ModbusSiteConfig, PointConfig
from .registers import (
           DATA_TYPE_SPECS,
           ByteOrder,
           DataType,
           RegisterType,
           WordOrder,
           decode_registers,
           encode_value,
)

__all__ = ["ModbusSiteConfig", "GatewayConfig", "DeviceConfig", "PointConfig", "DATA_TYPE_SPECS", "ByteOrder",
           "DataType", "RegisterType", "WordOrder", "decode_registers", "encode_value"]
