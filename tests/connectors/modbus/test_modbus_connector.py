"""A site engineer's Modbus gateway, as the platform sees it: a real pymodbus TCP server with two unit
ids is polled by the connector; readings arrive typed and scaled; the PLC restarting costs nothing once it
is back; read errors, unknown devices and floods are reported, not fatal; writes deliver commands."""

from __future__ import annotations

import json
import logging
import struct
import time

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

from connectors.base import Admission
from connectors.commands import CommandRouter
from connectors.modbus.config import ModbusSiteConfig
from connectors.modbus.connector import ModbusConnector
from connectors.ratelimit import TokenBuckets
from connectors.registry import DeviceRegistry
from connectors.siteconfig import validate_site
from connectors.uplink import UplinkPublisher
from schemas import topics
from tests.conftest import PORT_OFFSET
from tests.connectors.support import (
    LoopThread,
    new_tenant_id,
    publish_command,
    records,
    register_device,
)
from tests.utils.factories import wait_for

PORT = 25502 + PORT_OFFSET
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _unit():
    return ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [0] * 64), ir=ModbusSequentialDataBlock(1, [0] * 64),
                               co=ModbusSequentialDataBlock(1, [False] * 64),
                               di=ModbusSequentialDataBlock(1, [False] * 64))


class Plc:
    """The peer: a pymodbus TCP server with units 1, 2 and 3, stoppable and restartable on the same port."""

    def __init__(self, loop: LoopThread):
        self.loop, self.server = loop, None

    def start(self) -> None:
        async def go():
            self.server = ModbusTcpServer(ModbusServerContext(devices={1: _unit(), 2: _unit(), 3: _unit()}, single=False),
                                          address=("127.0.0.1", PORT))
            await self.server.serve_forever(background=True)
        self.loop.run(go())

    def stop(self) -> None:
        self.loop.run(self.server.shutdown())

    def write(self, unit: int, address: int, registers: list[int] | None = None, coil: bool | None = None) -> None:
        async def go():
            c = AsyncModbusTcpClient("127.0.0.1", port=PORT, reconnect_delay=0)
            assert await c.connect()
            try:
                if coil is not None:
                    assert not (await c.write_coil(address, coil, device_id=unit)).isError()
                else:
                    assert not (await c.write_registers(address, registers, device_id=unit)).isError()
            finally:
                c.close()
        self.loop.run(go())

    def read(self, unit: int, address: int, count: int) -> list[int]:
        async def go():
            c = AsyncModbusTcpClient("127.0.0.1", port=PORT, reconnect_delay=0)
            assert await c.connect()
            try:
                return (await c.read_holding_registers(address, count=count, device_id=unit)).registers
            finally:
                c.close()
        return self.loop.run(go())


def _f32(v: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", v)))


@pytest.fixture(scope="module")
def plant(infra, settings):
    """One PLC, one site (tenant from the site file), the connector running with its command router."""
    loop = LoopThread("modbus")
    plc = Plc(loop)
    plc.start()
    tenant = new_tenant_id()
    site = validate_site({
        "site_id": f"plant-{tenant[:8]}", "tenant_id": tenant, "rate_limit": {"per_second": 50, "burst": 50},
        "gateways": [{"host": "127.0.0.1", "port": PORT, "timeout_s": 1, "reconnect_min_s": 0.2,
                      "reconnect_max_s": 1, "devices": [
                          {"device_id": "boiler-1", "unit_id": 1, "interval_s": 0.2, "points": [
                              {"metric": "water_temp", "address": 0, "type": "int16", "scale": 0.1},
                              {"metric": "pressure", "address": 1, "type": "float32", "word_order": "little"},
                              {"metric": "energy", "address": 3, "function": "holding", "type": "uint32"},
                              {"metric": "setpoint", "address": 10, "type": "int16", "scale": 0.1,
                               "writable": True},
                              {"metric": "pump_on", "address": 0, "function": "coil", "type": "bool"}]},
                          {"device_id": "boiler-2", "unit_id": 2, "interval_s": 0.2, "points": [
                              {"metric": "water_temp", "address": 0, "type": "float64"}]},
                          {"device_id": "ghost", "unit_id": 3, "interval_s": 0.5, "points": [
                              {"metric": "x", "address": 0}]}]}]}, ModbusSiteConfig)
    plc.write(1, 0, [0xFF38] + list(reversed(_f32(1.25))) + [0x0001, 0x0002])  # -200 → -20.0; 1.25; 65538
    plc.write(1, 0, coil=True)
    plc.write(2, 0, list(struct.unpack(">HHHH", struct.pack(">d", 71.125))))
    for dev in ("boiler-1", "boiler-2"):  # "ghost" (unit 3) is in the file but not registered
        register_device(settings.bootstrap_servers, tenant, dev)
    registry = DeviceRegistry(settings.bootstrap_servers, "test-modbus").start()
    assert registry.wait_ready(30)
    wait_for(lambda: registry.get(tenant, "boiler-1") and registry.get(tenant, "boiler-2"), what="registry entries")
    uplink = UplinkPublisher(settings.bootstrap_servers, "modbus")
    admission = Admission(registry, TokenBuckets(site.rate_limit.per_second, site.rate_limit.burst))
    conn = ModbusConnector(uplink, site, admission)
    loop.run(conn.start())
    router = CommandRouter(settings.bootstrap_servers, conn, loop.loop, f"test-modbus-{tenant}").start()
    yield {"tenant": tenant, "conn": conn, "plc": plc, "loop": loop}
    router.stop()
    loop.run(conn.stop())
    registry.stop()
    uplink.close()
    plc.stop()
    loop.close()


def _telemetry(settings, tenant, device, match=lambda r: True, count=1, timeout=45):
    return records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                   lambda r: r["tenant_id"] == tenant and r["device_id"] == device and match(r),
                   count=count, timeout=timeout)


def test_readings_arrive_with_correct_values_and_types_for_several_unit_ids(plant, settings):
    t = plant["tenant"]
    rec = _telemetry(settings, t, "boiler-1")[0]
    assert rec["protocol"] == "modbus"
    assert rec["values"] == {"water_temp": pytest.approx(-20.0), "pressure": 1.25, "energy": 65538.0,
                             "setpoint": 0.0, "pump_on": True}
    assert isinstance(rec["values"]["pump_on"], bool) and isinstance(rec["values"]["energy"], float)
    assert rec["event_time"] == rec["receive_time"]  # Modbus carries no device clock
    rec2 = _telemetry(settings, t, "boiler-2")[0]
    assert rec2["values"] == {"water_temp": 71.125}


def test_a_device_in_the_file_but_not_in_the_registry_is_dead_lettered(plant, settings):
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                   lambda r: r["tenant_id"] == plant["tenant"] and r["device_id"] == "ghost")[0]
    assert dead["reason_code"] == "unknown_device" and dead["source"] == "modbus"
    assert json.loads(dead["raw"])["unit_id"] == 3  # the registers as read
    assert dead["origin"] == f"modbus://127.0.0.1:{PORT}/3"


def test_plc_restart_mid_stream_is_a_read_error_event_and_polling_resumes_with_new_values(plant, settings):
    t, plc = plant["tenant"], plant["plc"]
    plc.stop()
    ev = records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                 lambda r: r["tenant_id"] == t and r["device_id"] == "boiler-1" and r["event_type"] == "READ_ERROR")
    assert ev and ev[0]["details"]["unit_id"] == "1" and ev[0]["source"] == "modbus"
    plc.start()  # a fresh PLC: registers back to 0, then the site writes a new temperature
    plc.write(1, 0, [215])
    rec = _telemetry(settings, t, "boiler-1", lambda r: r["values"].get("water_temp") == pytest.approx(21.5))
    assert rec, "readings did not resume after the PLC came back"
    assert plant["conn"].health().healthy


def test_a_write_command_reaches_the_register_and_is_acknowledged(plant, settings):
    t, plc = plant["tenant"], plant["plc"]
    cid = publish_command(settings.bootstrap_servers, t, "boiler-1", json.dumps({"values": {"setpoint": 55.5}}),
                          protocol="modbus")
    ack = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name, lambda r: r["command_id"] == cid)[0]
    assert ack["status"] == "SUCCEEDED", ack
    assert plc.read(1, 10, 1) == [555]
    assert json.loads(ack["result_json"]) == {"written": {"setpoint": 55.5}, "holds": {"setpoint": pytest.approx(55.5)}}
    bad = publish_command(settings.bootstrap_servers, t, "boiler-1", json.dumps({"water_temp": 1}),
                          protocol="modbus")
    nack = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name, lambda r: r["command_id"] == bad)[0]
    assert nack["status"] == "FAILED" and "not a writable point" in nack["reason"]


def test_commands_for_the_same_device_id_of_another_tenant_are_not_this_sites(plant):
    conn = plant["conn"]
    assert conn.serves(plant["tenant"], "boiler-1")
    assert not conn.serves(new_tenant_id(), "boiler-1")


def test_a_device_over_its_rate_limit_is_dead_lettered_as_rate_limited(infra, settings):
    """Polling every 50 ms against a limit of 1 reading/s: most polls are refused, each with a reason."""
    loop = LoopThread("modbus-rl")
    tenant = new_tenant_id()
    register_device(settings.bootstrap_servers, tenant, "fast")
    site = validate_site({"site_id": "rl", "tenant_id": tenant, "rate_limit": {"per_second": 1, "burst": 1},
                          "gateways": [{"host": "127.0.0.1", "port": PORT, "devices": [
                              {"device_id": "fast", "unit_id": 2, "interval_s": 0.05,
                               "points": [{"metric": "v", "address": 0}]}]}]}, ModbusSiteConfig)
    registry = DeviceRegistry(settings.bootstrap_servers, "test-modbus-rl").start()
    wait_for(lambda: registry.get(tenant, "fast"), what="registry entry")
    uplink = UplinkPublisher(settings.bootstrap_servers, "modbus")
    conn = ModbusConnector(uplink, site, Admission(registry, TokenBuckets(1, 1)))
    try:
        loop.run(conn.start())
        dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                       lambda r: r["tenant_id"] == tenant and r["reason_code"] == "rate_limited", count=3)
        assert len(dead) >= 3 and "rate limit" in dead[0]["reason"]
        assert _telemetry(settings, tenant, "fast"), "the readings within the limit are kept"
    finally:
        loop.run(conn.stop())
        registry.stop()
        uplink.close()
        loop.close()


def test_the_scan_loop_survives_a_peer_that_is_not_there(infra, settings):
    """No server on the port: connect fails with backoff, READ_ERROR once, and the connector stays up."""
    loop = LoopThread("modbus-absent")
    tenant = new_tenant_id()
    site = validate_site({"site_id": "absent", "tenant_id": tenant, "gateways": [
        {"host": "127.0.0.1", "port": PORT + 1, "timeout_s": 0.5, "reconnect_min_s": 0.1, "devices": [
            {"device_id": "d", "unit_id": 1, "interval_s": 0.1, "points": [{"metric": "v", "address": 0}]}]}]},
        ModbusSiteConfig)
    uplink = UplinkPublisher(settings.bootstrap_servers, "modbus")
    conn = ModbusConnector(uplink, site, None)
    try:
        loop.run(conn.start())
        ev = records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                     lambda r: r["tenant_id"] == tenant and r["event_type"] == "READ_ERROR")
        assert "cannot connect" in ev[0]["reason"]
        wait_for(lambda: conn.stats["read_errors"] >= 3, what="more failed polls")
        assert all(not t.done() for t in conn._tasks), "a poll task died"
        assert not conn.health().healthy
    finally:
        loop.run(conn.stop())
        uplink.close()
        loop.close()




def test_a_point_decoding_to_nan_or_inf_is_dead_lettered_and_the_others_of_the_poll_land(plant, settings):
    t, plc = plant["tenant"], plant["plc"]
    since = int(time.time() * 1000)
    try:
        for bad in (float("nan"), float("inf")):
            plc.write(1, 1, list(reversed(_f32(bad))))  # pressure: float32, word order little
            dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                           lambda r, s=since: r["tenant_id"] == t and r["device_id"] == "boiler-1"
                           and r["time"] >= s and r["reason_code"] == "wrong_type" and "pressure" in r["reason"])
            assert dead and dead[0]["source"] == "modbus" and b'"values"' in dead[0]["raw"]
            # the same polls still carry the device's other points
            rec = _telemetry(settings, t, "boiler-1",
                             lambda r, s=since: r["receive_time"] >= s and "pressure" not in r["values"])[0]
            assert {"water_temp", "energy", "setpoint", "pump_on"} <= set(rec["values"])
            since = int(time.time() * 1000)
    finally:
        plc.write(1, 1, list(reversed(_f32(1.25))))
