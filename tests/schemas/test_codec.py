"""A data engineer decodes any topic with standard Avro steps: Confluent header (magic 0, schema id), the
writer schema by that id, the body (adr/0140). Our own readers decode any version of a record by its id."""

from __future__ import annotations

import importlib
import io
import json

import fastavro
import pytest
from fastavro.schema import parse_schema

from schemas import ValueDeserializationError, codec, codec_for
from schemas.codec import SCHEMA_FILES, SchemaIdsUnbound, load_schema

codecs = importlib.import_module("schemas.codec")  # the module: `schemas.codec` the attribute is the function

TELEMETRY = {"tenant_id": "t1", "device_id": "d1", "event_time": 1795719647123, "receive_time": 1795719647200,
             "protocol": "mqtt", "values": {"temperature": 21.5, "door_open": True, "mode": "eco"},
             "device_type": None, "tags": []}


@pytest.fixture
def rebind():
    """Binds this process's ids again with another writer-schema fetch, for one test; puts them back."""
    saved = codecs.current_binding()
    yield lambda fetch: codecs.bind_ids(codecs.bound_ids(), fetch)
    codecs.restore_binding(saved)


@pytest.fixture
def local_ids():
    saved = codecs.current_binding()
    codecs.bind_local_ids()
    yield
    codecs.restore_binding(saved)


def _encode(schema: dict, sid: int, record: dict) -> bytes:
    buf = io.BytesIO(b"\x00" + sid.to_bytes(4, "big"))
    buf.seek(5)
    fastavro.schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def test_round_trip_keeps_types():
    c = codec("telemetry")
    assert c.decode(c.encode(TELEMETRY)) == TELEMETRY


def test_wire_format_is_confluents_decodable_without_fleetstream():
    c = codec("telemetry")
    data = c.encode(TELEMETRY)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == c.schema_id
    body = fastavro.schemaless_reader(io.BytesIO(data[5:]), parse_schema(load_schema("telemetry")))
    assert body["values"] == TELEMETRY["values"]


def test_every_schema_has_a_distinct_id_and_is_found_by_it():
    ids = {codec(n).schema_id for n in SCHEMA_FILES}
    assert len(ids) == len(SCHEMA_FILES)
    data = codec("dead_letter").encode({"source": "x", "reason_code": "c", "reason": "r", "time": 1, "raw": b"\x00"})
    assert codec_for(data).name == "dead_letter"


def test_an_older_and_a_newer_writer_decode_through_the_registrys_schema(rebind):
    old = load_schema("telemetry")
    old["fields"] = [f for f in old["fields"] if f["name"] != "tags"]  # before tags existed
    new = load_schema("telemetry")
    new["fields"].append({"name": "firmware", "type": "string", "default": ""})  # a later version
    fetched = []
    rebind(lambda sid: fetched.append(sid) or {901: old, 902: new}.get(sid))
    rec = {k: v for k, v in TELEMETRY.items() if k != "tags"}
    assert codec("telemetry").decode(_encode(old, 901, rec)) == {**rec, "tags": []}  # the reader's default
    assert codec_for(_encode(new, 902, {**TELEMETRY, "firmware": "1.2"})).decode(
        _encode(new, 902, {**TELEMETRY, "firmware": "1.2"})) == TELEMETRY  # the writer's extra field dropped
    codec("telemetry").decode(_encode(old, 901, rec))
    assert fetched == [901, 902]  # each writer schema fetched once, then cached


def test_an_unknown_id_or_another_records_schema_is_a_clear_error(rebind):
    calls = []
    rebind(lambda sid: calls.append(sid) or (load_schema("alert") if sid == 905 else None))
    body = codec("telemetry").encode(TELEMETRY)[5:]
    for _ in range(2):
        with pytest.raises(ValueDeserializationError, match="unknown schema id 900"):
            codec("telemetry").decode(b"\x00\x00\x00\x03\x84" + body)
    assert calls == [900]  # a miss is remembered: garbage does not reach the registry per record
    with pytest.raises(ValueDeserializationError, match="is a io.fleetstream.Alert, not a io.fleetstream.Telemetry"):
        codec("telemetry").decode(b"\x00\x00\x00\x03\x89" + body)


def test_without_a_registry_an_unknown_id_is_unknown(local_ids):
    with pytest.raises(ValueDeserializationError, match="unknown schema id 7"):
        codec("telemetry").decode(b"\x00\x00\x00\x00\x07" + codec("telemetry").encode(TELEMETRY)[5:])


def test_codecs_refuse_to_work_before_the_ids_are_bound(rebind):
    codecs.restore_binding(type(codecs.current_binding())())  # nothing bound (rebind puts the ids back)
    with pytest.raises(SchemaIdsUnbound, match="runtime.schema_registry.bind"):
        codec("telemetry")
    with pytest.raises(ValueError, match="no schema id for"):
        codecs.bind_ids({"telemetry": 1})


@pytest.mark.parametrize("bad", [b"", b"{}", b"\x00" * 4, b"\xc3\x01" + b"\x00" * 8 + b"\x01",
                                 json.dumps(TELEMETRY).encode()])
def test_garbage_is_a_clear_error_not_a_crash(bad):
    with pytest.raises(ValueDeserializationError):
        codec("telemetry").decode(bad)


def test_schemas_reject_unknown_name_with_the_list():
    with pytest.raises(KeyError, match="telemetry"):
        codec("nope")
