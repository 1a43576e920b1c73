"""The canonical payload parser (JSON, and CBOR on CoAP) under arbitrary input: it never raises, every item
gets exactly one verdict, every reject has a known code and a readable reason, and every reading is finite,
well-typed and encodes to the Avro record the codec reads back (adr/0103)."""

from __future__ import annotations

import json
import math

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from connectors import canonical
from connectors.coap.adaptor import CBOR, JSON, to_readings
from schemas import codec
from schemas.telemetry_wire import TelemetryEncoder

NOW = 1_795_719_647_000
SKEW = 300_000

# values a device may put anywhere: every JSON scalar plus what JSON parsers let through (NaN, ±Infinity,
# integers far past a double, lone surrogates) and what CBOR adds (bytes, tuples, None keys)
def _long(lo: int, hi: int, ch: str = "x"):  # cheap to draw, unlike st.text of that size
    return st.integers(min_value=lo, max_value=hi).map(lambda n: ch * n)


texts = st.one_of(st.text(max_size=20), st.sampled_from(["\ud800", "a\udfffb", "\x00", "é" * 5, ""]),
                  _long(4090, 4100))
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                    st.integers(min_value=-(10 ** 400), max_value=10 ** 400))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
timestamps = st.one_of(st.integers(min_value=NOW - 10 ** 9, max_value=NOW + 2 * SKEW), numbers, texts,
                       st.booleans(), st.just(canonical.MIN_TS_MS - 1), st.just(NOW + SKEW + 1))
names = st.one_of(st.text(min_size=1, max_size=8), texts, _long(127, 130, "m"))
jsonish = st.recursive(scalars,
                       lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4),
                       max_leaves=12)
value_maps = st.dictionaries(names, st.one_of(scalars, jsonish), max_size=6)
readings = st.fixed_dictionaries({"values": st.one_of(value_maps, jsonish)},
                                 optional={"ts": timestamps, "extra": jsonish})
documents = st.one_of(readings, st.lists(st.one_of(readings, jsonish), max_size=6), jsonish)


def _check(readings_out, rejected, items: int | None) -> None:
    assert readings_out or rejected, "no verdict"
    if items is not None:
        assert len(readings_out) + len(rejected) == items, "one verdict per reading"
    for r in rejected:
        assert r.code in canonical.REASON_CODES, r.code
        assert r.reason and len(r.reason) <= canonical.MAX_REASON_LEN + 200
        r.reason.encode()  # readable: no lone surrogate reaches the dead letter
        assert type(r.raw) is bytes
    for r in readings_out:
        assert type(r.event_time) is int and canonical.MIN_TS_MS <= r.event_time <= NOW + SKEW
        assert 0 < len(r.values) <= canonical.MAX_VALUES
        for name, v in r.values.items():
            assert type(name) is str and 0 < len(name) <= canonical.MAX_NAME_LEN
            name.encode()
            assert type(v) in (float, bool, str), type(v)
            if type(v) is float:
                assert math.isfinite(v)
            if type(v) is str:
                assert len(v) <= canonical.MAX_STRING_LEN
                v.encode()
        data = TelemetryEncoder("fuzz").encode("t", "d", r.event_time, NOW, r.values)  # ids bound now
        back = codec("telemetry").decode(data)
        assert back["event_time"] == r.event_time and back["values"] == r.values


def _items(doc) -> int | None:
    if isinstance(doc, list):
        return len(doc) or 1  # an empty list is one reject
    return 1


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_get_a_verdict(raw):
    _check(*canonical.parse(raw, NOW, SKEW), items=None)


@given(documents)
def test_any_json_document_gets_one_verdict_per_reading(doc):
    raw = json.dumps(doc).encode()  # allow_nan and ensure_ascii: NaN/Infinity and \\udxxx escapes on the wire
    whole = len(raw) > canonical.MAX_PAYLOAD_BYTES  # refused as one
    _check(*canonical.parse(raw, NOW, SKEW), items=None if whole else _items(doc))


@given(documents, st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=8))
def test_a_corrupted_json_payload_gets_a_verdict(doc, at, junk):
    raw = bytearray(json.dumps(doc).encode())
    raw[at:at + len(junk)] = junk
    _check(*canonical.parse(bytes(raw), NOW, SKEW), items=None)


@given(st.integers(min_value=1, max_value=3000), st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_is_refused_not_raised(depth, opener):
    closer = b"]" if opener == b"[" else b"}"
    ok, bad = canonical.parse(opener * depth + b"1" + closer * depth, NOW, SKEW)
    _check(ok, bad, items=None)


@given(documents)
def test_any_cbor_document_gets_one_verdict_per_reading(doc):
    try:
        raw = cbor2.dumps(doc)
    except (UnicodeEncodeError, ValueError):  # CBOR text must be UTF-8: a lone surrogate cannot be written
        return
    ok, bad = to_readings(raw, CBOR, NOW, SKEW)
    _check(ok, bad, items=None if len(raw) > canonical.MAX_PAYLOAD_BYTES else _items(doc))


cbor_extras = st.recursive(
    st.one_of(scalars, st.binary(max_size=8), st.sampled_from([cbor2.undefined, cbor2.CBORTag(1, 1.5),
                                                                  cbor2.CBORSimpleValue(99)])),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.one_of(texts, st.integers(), st.binary(max_size=3)), kids, max_size=3),
    max_leaves=10)


@given(st.one_of(cbor_extras, st.fixed_dictionaries({"values": cbor_extras}, optional={"ts": cbor_extras})))
def test_cbor_only_values_are_refused_reading_by_reading(doc):
    try:
        raw = cbor2.dumps(doc)
    except (UnicodeEncodeError, ValueError, TypeError):
        return
    _check(*to_readings(raw, CBOR, NOW, SKEW), items=None)


@given(st.binary(max_size=2048), st.sampled_from([CBOR, JSON, None, 0, 42]))
def test_arbitrary_coap_payloads_get_a_verdict(raw, fmt):
    ok, bad = to_readings(raw, fmt, NOW, SKEW)
    assert ok or bad
    for r in bad:
        assert r.code in canonical.REASON_CODES | {"invalid_cbor", "unsupported_format"} and r.reason
    _check(ok, [], items=None) if ok else None
