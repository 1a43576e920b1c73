"""A data engineer decodes any topic with standard Avro steps: single-object header, fingerprint, body."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas import ValueDeserializationError, codec, codec_by_fingerprint
from schemas.codec import SCHEMA_FILES, load_schema

TELEMETRY = {"tenant_id": "t1", "device_id": "d1", "event_time": 1795719647123, "receive_time": 1795719647200,
             "protocol": "mqtt", "values": {"temperature": 21.5, "door_open": True, "mode": "eco"},
             "device_type": None, "tags": []}


def test_round_trip_keeps_types():
    c = codec("telemetry")
    assert c.decode(c.encode(TELEMETRY)) == TELEMETRY


def test_wire_format_is_avro_single_object_encoding_decodable_without_fleetstream():
    data = codec("telemetry").encode(TELEMETRY)
    assert data[:2] == b"\xc3\x01"
    schema = parse_schema(load_schema("telemetry"))
    fp = int(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"), 16)
    assert struct.unpack("<Q", data[2:10])[0] == fp
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
    assert body["values"] == TELEMETRY["values"]


def test_every_schema_has_a_distinct_fingerprint_and_is_found_by_it():
    fps = {codec(n).fingerprint for n in SCHEMA_FILES}
    assert len(fps) == len(SCHEMA_FILES)
    data = codec("dead_letter").encode({"source": "x", "reason_code": "c", "reason": "r", "time": 1, "raw": b"\x00"})
    assert codec_by_fingerprint(data).name == "dead_letter"


@pytest.mark.parametrize("bad", [b"", b"{}", b"\xc3\x01" + b"\x00" * 8 + b"\x01", json.dumps(TELEMETRY).encode()])
def test_garbage_is_a_clear_error_not_a_crash(bad):
    with pytest.raises(ValueDeserializationError):
        codec("telemetry").decode(bad)


def test_schemas_reject_unknown_name_with_the_list():
    with pytest.raises(KeyError, match="telemetry"):
        codec("nope")
