"""The canonical JSON payload, as a device integrator writes it; each reading is judged on its own."""

from __future__ import annotations

import json

import pytest

from connectors import canonical

NOW = 1795719647000
SKEW = 300_000


def parse(obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return canonical.parse(raw, NOW, SKEW)


def test_single_reading_with_device_time():
    ok, bad = parse({"ts": NOW - 5, "values": {"t": 21.5, "on": True, "mode": "eco", "n": 3}})
    assert bad == [] and ok == [canonical.Reading(NOW - 5, {"t": 21.5, "on": True, "mode": "eco", "n": 3.0})]


def test_missing_ts_uses_receive_time():
    ok, _ = parse({"values": {"t": 1}})
    assert ok[0].event_time == NOW


def test_list_keeps_good_readings_and_rejects_bad_ones():
    ok, bad = parse([{"ts": NOW, "values": {"t": 1}}, {"ts": NOW, "values": {"t": [1]}}, {"values": {"u": 2}}])
    assert [r.values for r in ok] == [{"t": 1.0}, {"u": 2.0}]
    assert [b.code for b in bad] == ["wrong_type"]
    assert json.loads(bad[0].raw) == {"ts": NOW, "values": {"t": [1]}}


@pytest.mark.parametrize("payload,code", [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    ({"values": {}}, "wrong_type"),
    ({"value": {"t": 1}}, "wrong_type"),
    ([], "wrong_type"),
    ({"ts": "yesterday", "values": {"t": 1}}, "wrong_type"),
    ({"ts": 1795719647, "values": {"t": 1}}, "bad_timestamp"),  # seconds, not ms
    ({"ts": NOW + SKEW + 1, "values": {"t": 1}}, "clock_skew"),
    ({"values": {"t": None}}, "wrong_type"),
    ({"values": {"": 1}}, "bad_metric_name"),
    (b'{"values": {"t": NaN}}', "wrong_type"),
    (b"x" * (canonical.MAX_PAYLOAD_BYTES + 1), "oversize"),
    # the poison of issue 19: each raised inside the connector once
    (b'{"ts": NaN, "values": {"t": 1}}', "bad_timestamp"),
    (b'{"ts": Infinity, "values": {"t": 1}}', "bad_timestamp"),
    (b'{"ts": -Infinity, "values": {"t": 1}}', "bad_timestamp"),
    (b'{"values": {"n": ' + b"9" * 400 + b"}}", "out_of_range"),
    (b'{"values": {"s": "\\ud800"}}', "invalid_text"),
    (b'{"values": {"\\udc00": 1}}', "invalid_text"),
    (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
    (b'{"values":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001, "too_deep"),
    ({"values": {"t": 1}, "ts": 10 ** 400}, "clock_skew"),
    ({"values": {"t": 1}, "ts": -(10 ** 400)}, "bad_timestamp"),
])
def test_bad_input_is_rejected_with_a_stable_code(payload, code):
    ok, bad = parse(payload)
    assert ok == [] and [b.code for b in bad] == [code]
    assert bad[0].reason and len(bad[0].reason) <= 200  # readable: a 400-digit ts is quoted short
    bad[0].reason.encode()


@pytest.mark.parametrize("raw", [
    b'{"values": {"big": 123456789012345678901234567890}}',  # past 64 bits: orjson refuses, json does not
    b'\xef\xbb\xbf{"values": {"t": 1}}',  # UTF-8 byte order mark
    '{"values": {"t": 1}}'.encode("utf-16"),  # json.loads detects UTF-16/32 in bytes
    b'{"values": {"s": "\\ud800"}}',  # a lone surrogate escape (json takes it; the checks refuse it)
    b'{"values": {"t": Infinity}}',
    b'{"values": {"t": 1}, "values": {"u": 2}}',  # duplicate keys: the last wins
])
def test_the_fast_parser_judges_every_payload_as_the_json_module_does(raw):
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    ok, bad = canonical.parse(raw, NOW, SKEW)
    if doc is None:
        assert not ok and bad[0].code == "invalid_json"
    else:
        items = doc if isinstance(doc, list) else [doc]
        expected = [(canonical._reading(i, NOW, SKEW)) for i in items if _valid(i)]
        assert ok == expected


def _valid(item) -> bool:
    try:
        canonical._reading(item, NOW, SKEW)
        return True
    except ValueError:
        return False
