"""Modbus register decoding under whatever a field device answers: ``decode_registers`` raises nothing but
ValueError, the connector's reading of a poll holds only finite floats, bools and text, and every point that cannot
be read is refused on its own with a known code (the others of the poll still land)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from connectors.canonical import REASON_CODES
from connectors.modbus.adaptor import to_reading
from connectors.modbus.config import PointConfig
from connectors.modbus.plan import plan_reads
from connectors.modbus.registers import (
    DATA_TYPE_SPECS,
    ByteOrder,
    DataType,
    Kind,
    RegisterType,
    WordOrder,
    decode_registers,
)

words = st.integers(min_value=0, max_value=0xFFFF)
anything = st.one_of(st.integers(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30), st.booleans())


@given(st.lists(anything, max_size=6), st.sampled_from(list(DataType)), st.sampled_from(list(ByteOrder)),
       st.sampled_from(list(WordOrder)))
def test_decode_of_any_registers_returns_a_value_or_a_value_error(regs, dtype, bo, wo):
    try:
        v = decode_registers(regs, dtype, bo, wo)
    except ValueError:
        return
    assert type(v) in (bool, int, float, str)


@given(st.data(), st.sampled_from(list(DataType)), st.sampled_from(list(ByteOrder)),
       st.sampled_from(list(WordOrder)))
def test_decode_of_a_well_formed_read_gives_the_types_value(data, dtype, bo, wo):
    spec = DATA_TYPE_SPECS[dtype]
    n = spec.registers or 3  # string: any count
    regs = data.draw(st.lists(words if spec.kind is not Kind.COIL else st.integers(0, 1), min_size=n, max_size=n))
    try:
        v = decode_registers(regs, dtype, bo, wo, bit=data.draw(st.integers(0, 15)))
    except ValueError:
        assert spec.kind in (Kind.STRING, Kind.BCD)  # not UTF-8 text, a nibble above 9: refused, not guessed
        return
    if spec.kind in (Kind.COIL, Kind.REGISTER_BIT):
        assert type(v) is bool
    elif spec.kind is Kind.STRING:
        assert type(v) is str
    elif spec.kind is Kind.BCD:
        assert type(v) is int and 0 <= v < 10 ** (4 * spec.registers)
    elif spec.integer:
        bits = 16 * spec.registers
        signed = dtype.value.startswith("int")
        lo, hi = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
        assert type(v) is int and lo <= v <= hi
    else:
        assert type(v) is float  # may be NaN or ±inf: to_reading refuses those


def _point(i: int, dtype: DataType, scale: float, offset: float) -> PointConfig:
    fn = RegisterType.COIL if dtype is DataType.BOOL else RegisterType.HOLDING
    if dtype in (DataType.STRING, DataType.BIT):  # no scale/offset; string spans 3, bit is bit 5
        return PointConfig(metric=f"m{i}", address=i * 4, function=fn, type=dtype,
                           **({"length": 3} if dtype is DataType.STRING else {"bit": 5}))
    return PointConfig(metric=f"m{i}", address=i * 4, function=fn, type=dtype, scale=scale, offset=offset)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: f != 0)


@given(st.lists(st.tuples(st.sampled_from(list(DataType)), finite_or_not, st.floats(allow_nan=True)),
                min_size=1, max_size=5), st.data())
def test_a_poll_of_any_answer_gives_finite_values_and_refuses_the_rest_point_by_point(points, data):
    cfg = [_point(i, d, s, o) for i, (d, s, o) in enumerate(points)]
    blocks = []
    for block in plan_reads(cfg):
        # the device's answer: usually the right length of 16-bit words, sometimes short or out of range
        regs = data.draw(st.lists(st.one_of(words, anything), min_size=0, max_size=block.count + 2))
        blocks.append((block, regs))
    reading, bad = to_reading(blocks, 1_795_719_647_000)
    assert len(bad) + (len(reading.values) if reading else 0) == len(cfg), "one verdict per point"
    for r in bad:
        assert r.code in REASON_CODES and r.reason
    if reading is not None:
        for v in reading.values.values():
            assert type(v) in (bool, str) or (type(v) is float and math.isfinite(v))
