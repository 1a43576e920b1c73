"""Modbus under real-world conditions (issue 16, adr/0151), against a real pymodbus server whose register map
has a hole: the device refuses the batched read, the connector halves it until the refused address is
isolated and remembered, and every valid point (64-bit, text, a bit of a register, BCD) still arrives. Status
follows poll health: READ_ERROR, OFFLINE stamped with the last reading, ONLINE again when reads resume."""

from __future__ import annotations

import logging
import struct
import time

import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import ModbusTcpServer

from connectors.modbus.config import ModbusSiteConfig
from connectors.modbus.connector import ModbusConnector
from connectors.siteconfig import validate_site
from connectors.uplink import UplinkPublisher
from schemas import topics
from tests.conftest import PORT_OFFSET
from tests.connectors.support import LoopThread, new_tenant_id, records
from tests.utils.factories import wait_for

PORT = 25504 + PORT_OFFSET
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
HOLE = 3  # the address the device does not have


def _registers() -> dict[int, list[int]]:
    """Holding registers 0..15 except HOLE (a sparse block refuses any read that touches it)."""
    i64 = list(struct.unpack(">HHHH", struct.pack(">q", -(2 ** 40) - 7)))
    text = [0x5042, 0x2D37, 0x0000]  # "PB-7", NUL padded
    return {0: [101, 102, 103], 4: i64 + text + [0b0010_0000, 0x1234, 0x0012, 0x3456, 0xFFFF]}


class SparsePlc:
    def __init__(self, loop: LoopThread):
        self.loop, self.server = loop, None

    def start(self) -> None:
        async def go():
            ctx = ModbusServerContext(devices={1: ModbusDeviceContext(hr=ModbusSparseDataBlock(_registers()))},
                                      single=False)
            self.server = ModbusTcpServer(ctx, address=("127.0.0.1", PORT))
            await self.server.serve_forever(background=True)
        self.loop.run(go())

    def stop(self) -> None:
        self.loop.run(self.server.shutdown())


@pytest.fixture(scope="module")
def field(infra, settings):
    loop = LoopThread("modbus-field")
    plc = SparsePlc(loop)
    plc.start()
    tenant = new_tenant_id()
    site = validate_site({"site_id": "field", "tenant_id": tenant, "gateways": [
        {"host": "127.0.0.1", "port": PORT, "timeout_s": 1, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
         "devices": [{"device_id": "skid-1", "unit_id": 1, "interval_s": 0.2, "offline_after_failures": 3,
                      "points": [
                          {"metric": "a", "address": 0}, {"metric": "b", "address": 1}, {"metric": "c", "address": 2},
                          {"metric": "hole", "address": HOLE},
                          {"metric": "energy", "address": 4, "type": "int64"},
                          {"metric": "tag", "address": 8, "type": "string", "length": 3},
                          {"metric": "alarm", "address": 11, "type": "bit", "bit": 5},
                          {"metric": "quiet", "address": 11, "type": "bit", "bit": 4},
                          {"metric": "hours", "address": 12, "type": "bcd16"},
                          {"metric": "count", "address": 13, "type": "bcd32"}]}]}]}, ModbusSiteConfig)
    uplink = UplinkPublisher(settings.bootstrap_servers, "modbus")
    conn = ModbusConnector(uplink, site, None)
    loop.run(conn.start())
    yield {"tenant": tenant, "conn": conn, "plc": plc}
    loop.run(conn.stop())
    uplink.close()
    plc.stop()
    loop.close()


def _telemetry(settings, tenant, match, count=1, timeout=60):
    return records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                   lambda r: r["tenant_id"] == tenant and r["device_id"] == "skid-1" and match(r),
                   count=count, timeout=timeout)


def _event(settings, tenant, kind, since=0, timeout=60):
    found = records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                    lambda r: r["tenant_id"] == tenant and r["device_id"] == "skid-1" and r["event_type"] == kind
                    and r["time"] >= since, timeout=timeout)
    assert found, f"no {kind} event"
    return found[0]


def test_a_refused_batch_is_split_until_the_bad_address_is_isolated_and_every_valid_point_arrives(field, settings):
    t = field["tenant"]
    rec = _telemetry(settings, t, lambda r: "a" in r["values"])[0]
    assert rec["values"] == {"a": 101.0, "b": 102.0, "c": 103.0, "energy": float(-(2 ** 40) - 7), "tag": "PB-7",
                             "alarm": True, "quiet": False, "hours": 1234.0, "count": 123456.0}
    ev = _event(settings, t, "CONFIG_ISSUE")
    assert set(ev["details"]) == {"hole"} and "illegal data address" in ev["details"]["hole"]
    assert field["conn"].refused == {"skid-1": {"hole": ev["details"]["hole"]}}
    # remembered: later polls read the valid points without touching the hole again
    (scan,) = field["conn"].scans.values()
    assert scan.blocks and all(not b.address <= HOLE < b.address + b.count for b in scan.blocks)
    assert sum(len(b.points) for b in scan.blocks) == 9
    before, now = field["conn"].stats["refused_points"], int(time.time() * 1000)
    assert _telemetry(settings, t, lambda r: r["receive_time"] > now and "a" in r["values"])
    assert field["conn"].stats["refused_points"] == before == 1


def test_status_follows_poll_health_and_offline_is_stamped_with_the_last_reading(field, settings):
    t, plc = field["tenant"], field["plc"]
    assert _event(settings, t, "ONLINE")["reason"] == "first successful poll"
    since = int(time.time() * 1000)
    plc.stop()
    err = _event(settings, t, "READ_ERROR", since=since)
    off = _event(settings, t, "OFFLINE", since=since - 5_000)
    assert "polls in a row failed" in off["reason"] and err["source"] == off["source"] == "modbus"
    last = _telemetry(settings, t, lambda r: r["receive_time"] == off["time"])
    assert last, "OFFLINE is not stamped with a reading's time"
    assert not _telemetry(settings, t, lambda r: r["receive_time"] > off["time"] and r["receive_time"] < since,
                          timeout=2), "a reading later than the OFFLINE stamp was published before the outage"
    resumed_after = int(time.time() * 1000)
    plc.start()
    on = _event(settings, t, "ONLINE", since=resumed_after)
    assert on["reason"].startswith("reads resumed after") and int(on["details"]["failed_polls"]) >= 3
    assert _telemetry(settings, t, lambda r: r["receive_time"] >= on["time"] and r["values"].get("a") == 101.0)
    wait_for(lambda: field["conn"]._health["skid-1"].online is True, what="online again")
