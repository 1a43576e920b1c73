"""The hand-written Telemetry pair (adr/0045, adr/0214): the encoder writes exactly the bytes fastavro writes for
the same record; the decoder reads exactly what fastavro reads, and leaves every unusual encoding to it
(tests/fuzz/test_telemetry_wire.py explores arbitrary records and corrupted bytes)."""

from __future__ import annotations

import io
import math

import fastavro
import pytest

from schemas import ValueDeserializationError, codec
from schemas.telemetry_wire import TelemetryEncoder, decode_telemetry

TIMES = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, 1_795_000_000_123, 2**62, -(2**63), 2**63 - 1]
VALUES = [
    {},
    {"voltage": 229.5, "power_w": 81.0, "energy_kwh": 0.123},
    {"a": -0.0, "b": math.inf, "c": 1e-308, "d": 1.7976931348623157e308},
    {"running": True, "stopped": False},
    {"state": "", "long": "x" * 300, "ünïcode": "温度 ✓"},
    {"mixed": 1.5, "flag": True, "label": "ok"},
    {"as_int": 3},  # not what canonical.parse produces (it makes floats), but must still encode the same
    {f"m{i}": float(i) for i in range(200)},  # map block count needs two varint bytes
]


@pytest.mark.parametrize("values", VALUES)
def test_bytes_are_identical_to_fastavro(values):
    enc, ref = TelemetryEncoder("mqtt"), codec("telemetry")
    for tenant, device in [("t" * 36, "dev-1"), ("ténant", "d" * 200), ("x", "y")]:
        for t in TIMES:
            rec = {"tenant_id": tenant, "device_id": device, "event_time": t, "receive_time": t // 2,
                   "protocol": "mqtt", "values": values, "device_type": None, "tags": []}
            assert enc.encode(tenant, device, t, t // 2, values) == ref.encode(rec)
            assert ref.decode(enc.encode(tenant, device, t, t // 2, values))["values"] == values or \
                any(isinstance(v, float) and math.isnan(v) for v in values.values())


def test_nan_encodes_like_fastavro():
    enc, ref = TelemetryEncoder("coap"), codec("telemetry")
    rec = {"tenant_id": "t", "device_id": "d", "event_time": 5, "receive_time": 6, "protocol": "coap",
           "values": {"x": math.nan}, "device_type": None, "tags": []}
    assert enc.encode("t", "d", 5, 6, {"x": math.nan}) == ref.encode(rec)



@pytest.mark.parametrize("values", VALUES)
def test_decoder_reads_what_fastavro_reads(values):
    ref = codec("telemetry")
    for device_type, tags in [(None, []), ("meter", ["site-a", "floor 2", "ü"]), ("", [""] * 70)]:
        for t in TIMES:
            rec = {"tenant_id": "ténant", "device_id": "d" * 70, "event_time": t, "receive_time": t // 3,
                   "protocol": "mqtt", "values": values, "device_type": device_type, "tags": tags}
            data = ref.encode(rec)
            expected = _fastavro(data)
            got = decode_telemetry(data)
            if abs(t) >= 2**62:  # a 10-byte varint: fastavro's
                assert got is None
            else:
                assert repr(got) == repr(expected)  # repr: NaN equals itself, -0.0 differs from 0.0, True from 1.0
            assert repr(ref.decode(data)) == repr(expected)


def _fastavro(data: bytes):
    c = codec("telemetry")
    return fastavro.schemaless_reader(io.BytesIO(data[5:]), c._read_schema, c._read_schema)


# what fastavro reads its own way (or refuses with its own words): the decoder leaves each to it
UNUSUAL = {
    "boolean byte 2 (fastavro: True)": (b"\x02\x02k\x02\x02\x00", b"\x00\x00"),
    "union branch -1 (fastavro: the last branch)": (b"\x02\x02k\x01\x02x\x00", b"\x00\x00"),
    "union branch 3": (b"\x02\x02k\x06\x02x\x00", b"\x00\x00"),
    "negative block count with its byte size": (b"\x01\x08\x02k\x02\x01\x00", b"\x00\x00"),
    "negative key length": (b"\x02\x01k\x02\x01\x00", b"\x00\x00"),
    "truncated double": (b"\x02\x02k\x00\x00\x00", b""),
    "key not UTF-8": (b"\x02\x02\xff\x02\x01\x00", b"\x00\x00"),
    "device_type branch 2": (b"\x00", b"\x04\x00"),
    "tags block count negative": (b"\x00", b"\x00\x01\x02\x02a\x00"),
}


@pytest.mark.parametrize("name", UNUSUAL)
def test_unusual_encodings_are_fastavros_to_judge(name):
    values, tail = UNUSUAL[name]
    ref = codec("telemetry")
    data = ref.header + b"\x02t\x02d\x02\x04\x08mqtt" + values + tail
    assert decode_telemetry(data) is None
    try:
        expected = repr(_fastavro(data))
    except Exception:
        with pytest.raises(ValueDeserializationError):
            ref.decode(data)
    else:
        assert repr(ref.decode(data)) == expected


def test_trailing_bytes_are_ignored_like_fastavro():
    ref = codec("telemetry")
    rec = {"tenant_id": "t", "device_id": "d", "event_time": 5, "receive_time": 6, "protocol": "mqtt",
           "values": {"x": 1.0}, "device_type": None, "tags": []}
    data = ref.encode(rec) + b"\xff\x00junk"
    assert decode_telemetry(data) == _fastavro(data) == rec
