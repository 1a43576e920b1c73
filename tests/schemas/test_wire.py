"""The one wire module (adr/0121): its framing is the Confluent wire format (adr/0140), its hand-written primitives
write and read exactly what fastavro does, and nothing else in the tree frames values or reaches into another
package's private names."""

from __future__ import annotations

import ast
import io
import math
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas import ValueDeserializationError, codec, wire
from schemas.codec import TELEMETRY_PLAIN_TAIL, telemetry_event_time, telemetry_tail

LONGS = [0, 1, -1, 2, -2, 63, -64, 64, -65, 8191, 8192, 1_795_000_000_123, 2**62, -(2**63), 2**63 - 1]
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["schemas", "runtime", "connectors", "streams", "sinks", "gateway", "fleetstream"]


def _fastavro(schema, datum) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parse_schema(schema), datum)
    return buf.getvalue()


def test_long_matches_the_avro_spec_examples_and_fastavro():
    assert [wire.encode_long(n) for n in (0, -1, 1, -2, 2, -64, 64)] == [
        b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\x7f", b"\x80\x01"]
    for n in LONGS:
        data = wire.encode_long(n)
        assert data == _fastavro("long", n)
        assert wire.read_long(b"xx" + data + b"yy", 2) == (n, 2 + len(data))


@pytest.mark.parametrize("s", ["", "x", "ténant", "温度 ✓", "y" * 300])
def test_strings_and_bytes_match_fastavro_and_read_back(s):
    assert wire.encode_string(s) == _fastavro("string", s)
    assert wire.encode_bytes(s.encode()) == _fastavro("bytes", s.encode())
    data = wire.encode_string(s) + b"rest"
    assert wire.read_string(data, 0) == (s, len(data) - 4)
    assert wire.read_bytes(data, 0) == (s.encode(), len(data) - 4)
    two = wire.encode_string(s) + wire.encode_bytes(b"\xff") + b"rest"
    assert wire.skip_strings(two, 0, 2) == len(two) - 4


def test_doubles_booleans_unions_and_arrays_match_fastavro():
    for v in (0.0, -0.0, 1.5, math.inf, -math.inf, 1e-308, 1.7976931348623157e308):
        assert wire.encode_double(v) == _fastavro("double", v)
        assert wire.read_double(wire.encode_double(v), 0) == (v, 8)
    assert math.isnan(wire.read_double(wire.encode_double(math.nan), 0)[0])
    for v in (True, False):
        assert wire.encode_boolean(v) == _fastavro("boolean", v)
        assert wire.read_boolean(wire.encode_boolean(v), 0) == (v, 1)
    union = ["null", "string", "double"]
    assert wire.encode_union(0) == _fastavro(union, None)
    assert wire.encode_union(1, wire.encode_string("x")) == _fastavro(union, "x")
    assert wire.read_union(wire.encode_union(2, wire.encode_double(2.5)), 0) == (2, 1)
    strings = {"type": "array", "items": "string"}
    for items in ([], ["a"], [f"t{i}" for i in range(100)]):
        assert wire.encode_array([wire.encode_string(t) for t in items]) == _fastavro(strings, items)


@pytest.mark.parametrize("truncated", [b"", b"\x80", b"\x06ab", b"\x03"])
def test_readers_refuse_truncated_or_negative_lengths(truncated):
    with pytest.raises(IndexError):
        wire.read_string(truncated, 0)
    with pytest.raises(IndexError):
        wire.read_double(truncated, 0)


def test_framing_is_the_confluent_wire_format():
    c = codec("telemetry")
    assert c.header == b"\x00" + c.schema_id.to_bytes(4, "big") and len(c.header) == wire.HEADER_LEN == 5
    assert wire.parse_header(c.header + b"body") == c.schema_id
    assert wire.parse_header(wire.header(2**32 - 1)) == 2**32 - 1
    for bad in (b"", b"\x00\x00\x00\x01", b"\xc3\x01" + b"\x00" * 10, b"{}" + b"\x00" * 10):
        with pytest.raises(ValueDeserializationError, match="not in the Confluent wire format"):
            wire.parse_header(bad)
    other = codec("alert")
    assert wire.header_error(other.header, c.schema_id) == f"schema id {other.schema_id} is not schema id {c.schema_id}"
    assert c.matches(c.header + b"\x00") and not c.matches(other.header + b"\x00") and not c.matches(b"")


TEL = {"tenant_id": "tenant-é", "device_id": "dev-1", "event_time": 1_795_000_000_123, "receive_time": -5,
       "protocol": "mqtt", "values": {"t": 21.5}, "device_type": None, "tags": []}


def test_peeks_read_leading_fields_or_say_none():
    data = codec("telemetry").encode(TEL)
    assert (wire.peek_string(data), wire.peek_string(data, 1)) == ("tenant-é", "dev-1")
    assert (wire.peek_long(data, 2), wire.peek_long(data, 2, 1)) == (1_795_000_000_123, -5)
    assert telemetry_event_time(data) == 1_795_000_000_123
    for bad in (None, b"", data[:12], data[:wire.HEADER_LEN + 1]):
        assert wire.peek_string(bad, 1) is None and wire.peek_long(bad, 2, 1) is None
    with pytest.raises(IndexError):
        telemetry_event_time(data[:14])


@pytest.mark.parametrize(("device_type", "tags"), [(None, []), ("boiler", ["site-a", "floor-2"]), ("", []),
                                                    (None, ["x"]), ("t" * 200, [f"tag{i}" for i in range(70)])])
def test_telemetry_tail_is_the_end_of_fastavros_record(device_type, tags):
    tel = codec("telemetry")
    enriched = tel.encode({**TEL, "device_type": device_type, "tags": tags})
    assert tel.encode(TEL).endswith(TELEMETRY_PLAIN_TAIL)
    assert tel.encode(TEL)[:-len(TELEMETRY_PLAIN_TAIL)] + telemetry_tail(device_type, tags) == enriched


def test_container_file_is_read_by_fastavro():
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "long"}]}
    sync = b"0123456789abcdef"
    records = [{"a": "x" * i, "b": -i * 1000} for i in range(50)]
    body = b"".join(_fastavro(schema, r) for r in records)
    data = wire.container_file(wire.container_header(schema, sync), len(records), body, sync)
    assert list(fastavro.reader(io.BytesIO(data))) == records
    with pytest.raises(ValueError):
        wire.container_header(schema, b"short")


def _sources():
    for pkg in PACKAGES:
        yield from (p for p in (ROOT / pkg).rglob("*.py") if ".venv" not in p.parts)


def test_no_module_imports_a_private_name_from_another_package():
    found = []
    for path in _sources():
        own = path.relative_to(ROOT).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] in PACKAGES and parts[0] != own:
                    found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") or any(p.startswith("_") for p in parts)]
    assert not found


def test_only_the_wire_module_writes_the_framing():
    layout = ('">BI"', "'>BI'")  # the header's struct: magic byte, big-endian 4-byte id
    writers = [str(p.relative_to(ROOT)) for p in _sources() if any(m in p.read_text() for m in layout)]
    assert writers == ["schemas/wire.py"]
