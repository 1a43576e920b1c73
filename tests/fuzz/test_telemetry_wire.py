"""The hand-written Telemetry decoder (schemas/telemetry_wire.py, adr/0214) under arbitrary records and
corrupted bytes: whatever it returns is exactly what fastavro reads, and the codec built on it accepts,
reads and refuses exactly as fastavro alone does (a refusal is a ``ValueDeserializationError``, which validate
dead-letters as ``undecodable``)."""

from __future__ import annotations

import io

import fastavro
from hypothesis import given
from hypothesis import strategies as st

from schemas import ValueDeserializationError, codec
from schemas.telemetry_wire import TelemetryEncoder, decode_telemetry

longs = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                  st.integers(min_value=1_700_000_000_000, max_value=2_000_000_000_000),
                  st.integers(min_value=-200, max_value=200))
texts = st.text(max_size=80)
metric_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.booleans(), texts)
records = st.fixed_dictionaries({
    "tenant_id": texts, "device_id": texts, "event_time": longs, "receive_time": longs, "protocol": texts,
    "values": st.dictionaries(st.text(max_size=20), metric_values, max_size=70),
    "device_type": st.one_of(st.none(), texts), "tags": st.lists(texts, max_size=70)})


def _fastavro(data: bytes):
    c = codec("telemetry")
    return fastavro.schemaless_reader(io.BytesIO(data[5:]), c._read_schema, c._read_schema)


def _verdict(decode, data: bytes) -> str:
    """What a reader makes of ``data``: the record (as repr: NaN equals itself, -0.0 is not 0.0, True is not
    1.0) or the fact that it refused it."""
    try:
        return repr(decode(data))
    except ValueDeserializationError:
        return "refused"


def _fastavro_verdict(data: bytes) -> str:
    try:
        return repr(_fastavro(data))
    except Exception:  # what RecordCodec.decode turns into ValueDeserializationError
        return "refused"


@given(records)
def test_decoder_reads_any_record_as_fastavro_does(rec):
    data = codec("telemetry").encode(rec)
    got = decode_telemetry(data)
    assert got is None or repr(got) == repr(_fastavro(data))
    assert _verdict(codec("telemetry").decode, data) == _fastavro_verdict(data)


@given(records, st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
                         min_size=1, max_size=4), st.integers(min_value=0))
def test_corrupted_bytes_get_fastavros_verdict(rec, flips, cut):
    data = bytearray(codec("telemetry").encode(rec))
    for at, byte in flips:  # the header stays: another header is another schema's business
        data[5 + at % (len(data) - 5)] = byte
    data = bytes(data[:max(5, len(data) - cut % 12)])  # and sometimes cut short
    got = decode_telemetry(data)
    assert got is None or repr(got) == repr(_fastavro(data))
    assert _verdict(codec("telemetry").decode, data) == _fastavro_verdict(data)


@given(st.text(max_size=40), st.text(max_size=40), longs, longs,
       st.dictionaries(st.text(min_size=1, max_size=20), st.one_of(st.floats(), st.booleans(), texts), max_size=8))
def test_the_pair_round_trips(tenant, device, event_time, receive_time, values):
    data = TelemetryEncoder("mqtt").encode(tenant, device, event_time, receive_time, values)
    assert repr(codec("telemetry").decode(data)) == repr(
        {"tenant_id": tenant, "device_id": device, "event_time": event_time, "receive_time": receive_time,
         "protocol": "mqtt", "values": values, "device_type": None, "tags": []})
