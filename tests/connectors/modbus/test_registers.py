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
    Kind,
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
        if spec.kind in (Kind.STRING, Kind.REGISTER_BIT):
            continue  # below: text has the point's length; a bit in a register is not written
        regs = encode_value(1, dtype)
        assert len(regs) == spec.registers
        assert decode_registers(regs, dtype) == 1


SIXTY_FOUR = [
    ([0x0000, 0x0000, 0x0001, 0x0000], DataType.UINT64, B, WB, 65536),
    ([0x0000, 0x0001, 0x0000, 0x0000], DataType.UINT64, B, WL, 65536),  # low word first
    ([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], DataType.INT64, B, WB, -2),
    ([0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF], DataType.INT64, B, WB, 2 ** 63 - 1),
    ([0x0000, 0x0000, 0x1234], DataType.STRING, B, WB, ""),
    ([0x4142, 0x4300, 0x0000], DataType.STRING, B, WB, "ABC"),  # NUL padded
    ([0x4241, 0x4320, 0x2020], DataType.STRING, L, WB, "AB C"),  # bytes swapped per register, space padded
    ([0x1234], DataType.BCD16, B, WB, 1234),
    ([0x0012, 0x3456], DataType.BCD32, B, WB, 123456),
    ([0x3456, 0x0012], DataType.BCD32, B, WL, 123456),
]


@pytest.mark.parametrize(("regs", "dtype", "bo", "wo", "expected"), SIXTY_FOUR)
def test_64_bit_string_and_bcd_decode(regs, dtype, bo, wo, expected):
    assert decode_registers(regs, dtype, bo, wo) == expected


def test_64_bit_string_and_bcd_encode_back_exactly():
    for regs, dtype, bo, wo, value in SIXTY_FOUR:
        if dtype is DataType.STRING:
            if value:
                assert decode_registers(encode_value(value, dtype, bo, wo, length=len(regs)), dtype, bo, wo) == value
            continue
        assert encode_value(value, dtype, bo, wo) == regs


def test_a_bit_inside_a_register_is_read_and_never_written():
    assert decode_registers([0b0000_0100], DataType.BIT, bit=2) is True
    assert decode_registers([0b0000_0100], DataType.BIT, bit=3) is False
    assert decode_registers([0x8000], DataType.BIT, bit=15) is True
    with pytest.raises(ValueError, match="cannot be written"):
        encode_value(True, DataType.BIT)
    msg = _bad(lambda r: r["gateways"][0]["devices"][0]["points"].append(
        {"metric": "b", "address": 5, "type": "bit", "bit": 3, "writable": True}))
    assert "b: writable: type bit cannot be written" in msg
    assert "bit: required with type bit" in _bad(lambda r: r["gateways"][0]["devices"][0]["points"].append(
        {"metric": "b", "address": 5, "type": "bit"}))


def test_what_the_device_cannot_hold_exactly_is_refused_not_rounded():
    with pytest.raises(ValueError, match="not a whole number"):
        encode_value(12.7, DataType.INT16)
    p = PointConfig(metric="sp", address=0, type=DataType.INT16)
    with pytest.raises(ValueError, match=r"sp: 12.7 is not representable: int16 with scale 1 .*nearest: 13"):
        to_wire(p, 12.7)
    assert to_wire(p, 13) == [13] and to_wire(p, 13.0) == [13]
    tenth = PointConfig(metric="sp", address=0, type=DataType.INT16, scale=0.1)
    assert to_wire(tenth, 55.5) == [555]  # 554.9999999999999 in floating point is still 555 steps
    with pytest.raises(ValueError, match="not representable"):
        to_wire(tenth, 55.55)
    with pytest.raises(ValueError, match="does not fit bcd16"):
        encode_value(12345, DataType.BCD16)
    with pytest.raises(ValueError, match="do not fit 2 registers"):
        encode_value("hello", DataType.STRING, length=2)
    with pytest.raises(ValueError, match="not binary-coded decimal"):
        decode_registers([0x12A4], DataType.BCD16)


def test_a_64_bit_value_beyond_2_to_the_53_is_refused_as_a_reading():
    huge = PointConfig(metric="n", address=0, type=DataType.UINT64)
    with pytest.raises(ValueError, match="beyond"):
        point_value(huge, [0xFFFF] * 4)
    assert point_value(huge, [0x001F, 0xFFFF, 0xFFFF, 0xFFFF]) == float(2 ** 53 - 1)


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
    msg = _bad(lambda r: pts(r)[0].update(type="int128"))
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
