"""The protocol side of the connector contract suite: one ``Peer`` per protocol, each a real protocol server
(pymodbus, asyncua) and the site file that maps it to the same three devices:

- ``dev-1`` (registered): ``level`` (a number), ``setpoint`` (writable, whole numbers: int16) and ``bad``
  (a number the peer can make NaN); a named command ``set_sp`` writes ``setpoint`` from ``{"value": v}``;
- ``ghost`` (in the site file, never registered) and ``held`` (registered, suspended).

To add a protocol: write a ``Peer`` subclass here and add it to ``PEERS``; every test of
``test_contract.py`` then runs against it."""

from __future__ import annotations

import abc
import logging
import struct
from typing import Any, ClassVar

from tests.conftest import PORT_OFFSET
from tests.connectors.support import LoopThread

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
logging.getLogger("asyncua").setLevel(logging.ERROR)

DEVICES = ("dev-1", "ghost", "held")
COMMANDS = [{"name": "set_sp", "write": "setpoint"}]


class Peer(abc.ABC):
    protocol: ClassVar[str]

    def __init__(self, loop: LoopThread):
        self.loop = loop

    @abc.abstractmethod
    def start(self) -> None:
        """Start (or restart) the server with ``level`` 7, ``setpoint`` 0, ``bad`` 1.5."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def site(self, tenant_id: str) -> tuple[Any, dict]:
        """(the protocol's site model class, the site file as a dict)."""

    @abc.abstractmethod
    def connector(self, uplink, site, admission): ...

    @abc.abstractmethod
    def set(self, metric: str, value: float) -> None:
        """Set dev-1's ``metric`` on the server, as the machine would."""

    @abc.abstractmethod
    def get(self, metric: str) -> float: ...


def _unit():
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock

    return ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [0] * 16))


class ModbusPeer(Peer):
    protocol = "modbus"
    port = 25506 + PORT_OFFSET
    address = {"level": 0, "setpoint": 1, "bad": 2}

    def start(self) -> None:
        from pymodbus.datastore import ModbusServerContext
        from pymodbus.server import ModbusTcpServer

        async def go():
            self.units = {1: _unit(), 2: _unit(), 3: _unit()}
            self.server = ModbusTcpServer(ModbusServerContext(devices=self.units, single=False),
                                          address=("127.0.0.1", self.port))
            await self.server.serve_forever(background=True)
        self.loop.run(go())
        self.set("level", 7)
        self.set("bad", 1.5)

    def stop(self) -> None:
        self.loop.run(self.server.shutdown())

    def site(self, tenant_id: str):
        from connectors.modbus.config import ModbusSiteConfig

        points = [{"metric": "level", "address": 0, "type": "uint16"},
                  {"metric": "setpoint", "address": 1, "type": "int16", "writable": True},
                  {"metric": "bad", "address": 2, "type": "float32"}]
        dev = {"interval_s": 0.2, "offline_after_failures": 2, "points": points}
        return ModbusSiteConfig, {"site_id": "contract-modbus", "tenant_id": tenant_id, "gateways": [{
            "host": "127.0.0.1", "port": self.port, "timeout_s": 1, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
            "devices": [{"device_id": d, "unit_id": i + 1, **dev, **({"commands": COMMANDS} if i == 0 else {})}
                        for i, d in enumerate(DEVICES)]}]}

    def connector(self, uplink, site, admission):
        from connectors.modbus.connector import ModbusConnector

        return ModbusConnector(uplink, site, admission)

    def _regs(self, metric: str, value: float) -> list[int]:
        if metric == "bad":
            return list(struct.unpack(">HH", struct.pack(">f", value)))
        return [int(value) & 0xFFFF]

    async def _client(self):
        from pymodbus.client import AsyncModbusTcpClient

        c = AsyncModbusTcpClient("127.0.0.1", port=self.port, reconnect_delay=0)
        assert await c.connect()
        return c

    def set(self, metric: str, value: float) -> None:
        async def go():
            c = await self._client()
            try:
                assert not (await c.write_registers(self.address[metric], self._regs(metric, value),
                                                    device_id=1)).isError()
            finally:
                c.close()
        self.loop.run(go())

    def get(self, metric: str) -> float:
        async def go():
            c = await self._client()
            try:
                return (await c.read_holding_registers(self.address[metric], count=1, device_id=1)).registers[0]
            finally:
                c.close()
        raw = self.loop.run(go())
        return float(raw - 0x10000 if raw & 0x8000 else raw)


class OpcUaPeer(Peer):
    protocol = "opcua"
    port = 24842 + PORT_OFFSET
    uri = "urn:fleetstream:test:contract"

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/contract"

    server = None

    def start(self) -> None:
        from asyncua import Server, ua

        async def build():
            s = Server()
            await s.init()  # builds the standard address space: ~2 s of CPU, 20 s of wall time at load 20
            s.set_endpoint(self.endpoint)
            idx = await s.register_namespace(self.uri)
            obj = await s.nodes.objects.add_object(ua.NodeId("Tank", idx), "Tank")
            self.nodes = {
                "level": await obj.add_variable(ua.NodeId("Tank.Level", idx), "Level", 7.0),
                "setpoint": await obj.add_variable(ua.NodeId("Tank.Setpoint", idx), "Setpoint", 0, ua.VariantType.Int16),
                "bad": await obj.add_variable(ua.NodeId("Tank.Bad", idx), "Bad", 1.5),
            }
            await self.nodes["setpoint"].set_writable()
            self.server = s

        # a restart reopens the same server: stop() closed its listener and every session (the connector's
        # link dies as with a new process); its values are set back to what a new server starts with
        if self.server is None:
            self.loop.run(build())
        else:
            for metric, value in (("level", 7.0), ("setpoint", 0), ("bad", 1.5)):
                self.set(metric, value)
        self.loop.run(self.server.start())

    def stop(self) -> None:
        self.loop.run(self.server.stop())

    def site(self, tenant_id: str):
        from connectors.opcua.config import OpcUaSiteConfig

        def nodes():
            return [{"node_id": f"nsu={self.uri};s=Tank.Level", "metric": "level"},
                    {"node_id": f"nsu={self.uri};s=Tank.Setpoint", "metric": "setpoint", "writable": True},
                    {"node_id": f"nsu={self.uri};s=Tank.Bad", "metric": "bad"}]
        return OpcUaSiteConfig, {"site_id": "contract-opcua", "tenant_id": tenant_id, "servers": [{
            "endpoint": self.endpoint, "publishing_interval_ms": 100, "reconnect_min_s": 0.2, "reconnect_max_s": 1,
            "online_every_s": 1, "devices": [{"device_id": d, "nodes": nodes(),
                                              **({"commands": COMMANDS} if d == "dev-1" else {})}
                                             for d in DEVICES]}]}

    def connector(self, uplink, site, admission):
        from connectors.opcua.connector import OpcUaConnector

        return OpcUaConnector(uplink, site, admission)

    def set(self, metric: str, value: float) -> None:
        from asyncua import ua

        vt = ua.VariantType.Int16 if metric == "setpoint" else ua.VariantType.Double
        self.loop.run(self.nodes[metric].write_value(ua.Variant(int(value) if metric == "setpoint" else value, vt)))

    def get(self, metric: str) -> float:
        return float(self.loop.run(self.nodes[metric].read_value()))


PEERS: dict[str, type[Peer]] = {p.protocol: p for p in (ModbusPeer, OpcUaPeer)}
