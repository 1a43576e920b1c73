"""Register decoding as a site engineer configures it: every type, byte and word order, scale and offset,
read batching, and config errors that name the object and the key. Pure logic, no peer."""

from __future__ import annotations

import math
import struct

import pytest

from connectors.errors import ConfigError
from connectors.modbus.adaptor import point_value, to_wire
from connectors.modbus.config import ModbusSiteConfig, PointConfig
from connectors.modbus.plan import plan_reads
from connectors.modbus.registers import (
    DATA_TYPE_SPECS,
    ByteOrder,
    DataType,
    RegisterType,
    WordOrder,
    decode_registers,
    encode_value,
)
from connectors.siteconfig import validate_site

B, L = ByteOrder.BIG, ByteOrder.LITTLE
WB, WL = WordOrder.BIG, WordOrder.LITTLE
F32 = struct.unpack(">HH", struct.pack(">f", 21.5))  # 0x41AC, 0x0000

DECODE_CASES = [
    # registers, type, byte order, word order, expected
    ([0x0001], DataType.UINT16, B, WB, 1),
    ([0xFFFF], DataType.UINT16, B, WB, 65535),
    ([0xFFFF], DataType.INT16, B, WB, -1),
    ([0x8000], DataType.INT16, B, WB, -32768),
    ([0x0100], DataType.INT16, L, WB, 1),  # bytes swapped inside the register
    ([0x0001, 0x0000], DataType.UINT32, B, WB, 65536),
    ([0x0000, 0x0001], DataType.UINT32, B, WL, 65536),  # low word first
    ([0xFFFF, 0xFFFE], DataType.INT32, B, WB, -2),
    ([0xFEFF, 0xFFFF], DataType.INT32, L, WL, -2),  # both swapped
    ([F32[0], F32[1]], DataType.FLOAT32, B, WB, 21.5),
    ([F32[1], F32[0]], DataType.FLOAT32, B, WL, 21.5),
    ([0x4035, 0x8000, 0, 0], DataType.FLOAT64, B, WB, 21.5),
    ([0, 0, 0x8000, 0x4035], DataType.FLOAT64, B, WL, 21.5),
    ([0, 0, 0x0080, 0x3540], DataType.FLOAT64, L, WL, 21.5),
    ([1], DataType.BOOL, B, WB, True),
    ([0], DataType.BOOL, B, WB, False),
]


@pytest.mark.parametrize(("regs", "dtype", "bo", "wo", "expected"), DECODE_CASES)
def test_decode_registers_table(regs, dtype, bo, wo, expected):
    got = decode_registers(regs, dtype, bo, wo)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("regs", "dtype", "bo", "wo", "expected"), DECODE_CASES)
def test_encode_is_the_inverse_of_decode(regs, dtype, bo, wo, expected):
    assert encode_value(expected, dtype, bo, wo) == [int(r) for r in regs]


def test_every_type_in_the_table_round_trips_and_has_its_register_count():
    for dtype, spec in DATA_TYPE_SPECS.items():
        regs = encode_value(1, dtype)
        assert len(regs) == spec.registers
        assert decode_registers(regs, dtype) == 1


def test_wrong_register_count_and_out_of_range_writes_are_refused():
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_registers([1], DataType.INT32)
    with pytest.raises(ValueError, match="does not fit int16"):
        encode_value(40000, DataType.INT16)


def test_scale_and_offset_turn_raw_counts_into_engineering_units_and_back():
    p = PointConfig(metric="t", address=0, type=DataType.INT16, scale=0.1, offset=-40)
    assert point_value(p, [615]) == pytest.approx(21.5)
    assert to_wire(p, 21.5) == [615]
    assert point_value(p, [0xFFFF]) == pytest.approx(-40.1)  # signed raw value
    nan = PointConfig(metric="n", address=0, type=DataType.FLOAT32)
    assert math.isnan(point_value(nan, [0x7FC0, 0]))


def test_contiguous_points_are_read_with_one_request_and_gaps_split_them():
    pts = [PointConfig(metric="a", address=0, type=DataType.INT16),
           PointConfig(metric="b", address=1, type=DataType.FLOAT32),
           PointConfig(metric="c", address=3, type=DataType.UINT32),
           PointConfig(metric="d", address=10, type=DataType.UINT16),
           PointConfig(metric="e", address=0, function=RegisterType.COIL, type=DataType.BOOL),
           PointConfig(metric="f", address=1, function=RegisterType.COIL, type=DataType.BOOL)]
    blocks = plan_reads(pts)
    assert [(b.function.value, b.address, b.count) for b in blocks] == [
        ("holding", 0, 5), ("holding", 10, 1), ("coil", 0, 2)]
    assert [(b.address, b.count) for b in plan_reads(pts[:4], max_gap=5)][0] == (0, 11)


def test_batches_never_exceed_the_protocol_limit_of_125_registers():
    pts = [PointConfig(metric=f"m{i}", address=i * 4, type=DataType.FLOAT64) for i in range(40)]
    blocks = plan_reads(pts)
    assert all(b.count <= 125 for b in blocks) and sum(len(b.points) for b in blocks) == 40
    assert len(blocks) == 2


SITE = {"site_id": "plant-1", "tenant_id": "t-1", "gateways": [{"host": "10.0.0.1", "devices": [
    {"device_id": "boiler-1", "unit_id": 1, "points": [
        {"metric": "temp", "address": 0, "type": "int16"},
        {"metric": "run", "address": 0, "function": "coil", "type": "bool"}]}]}]}


def _bad(mutate) -> str:
    import copy

    raw = copy.deepcopy(SITE)
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        validate_site(raw, ModbusSiteConfig)
    return str(info.value)


def test_a_valid_site_file_loads():
    site = validate_site(SITE, ModbusSiteConfig)
    assert site.gateways[0].port == 502 and site.gateways[0].devices[0].interval_s == 5


def test_config_errors_name_site_device_point_and_key():
    pts = lambda r: r["gateways"][0]["devices"][0]["points"]  # noqa: E731
    msg = _bad(lambda r: pts(r)[0].update(type="int64"))
    assert msg.startswith("site/plant-1/10.0.0.1/boiler-1/temp: type ")
    msg = _bad(lambda r: pts(r)[1].update(function="holding"))
    assert msg == "site/plant-1/10.0.0.1/boiler-1/run: function holding cannot hold type bool (use coil, discrete_input)"
    msg = _bad(lambda r: pts(r)[0].update(writable=True, function="input"))
    assert "boiler-1/temp: writable: function input cannot be written" in msg
    msg = _bad(lambda r: pts(r)[0].update(colour="red"))
    assert "boiler-1/temp: colour Extra inputs are not permitted" in msg
    msg = _bad(lambda r: r["gateways"][0]["devices"].append(
        {"device_id": "boiler-2", "unit_id": 1, "points": [{"metric": "x", "address": 0}]}))
    assert "site/plant-1/10.0.0.1: devices: unit_id 1 is used by 'boiler-1' and 'boiler-2'" in msg
    msg = _bad(lambda r: r.pop("tenant_id"))
    assert msg == "site/plant-1: tenant_id Field required"
    second = {"host": "10.0.0.2", "devices": [{"device_id": "boiler-1", "unit_id": 1,
                                               "points": [{"metric": "x", "address": 0}]}]}
    msg = _bad(lambda r: r["gateways"].append(second))
    assert "gateways: device_id 'boiler-1' appears twice in the site" in msg


def test_the_documented_example_file_is_valid():
    from pathlib import Path

    from connectors.modbus.settings import load_modbus_site

    site = load_modbus_site(Path(__file__).parents[3] / "connectors/modbus/examples/site.yaml")
    assert {d.device_id for g in site.gateways for d in g.devices} == {"boiler-1", "boiler-2"}
