"""Properties of rule documents (schemas/rules.py, adr/0055 and 0109), checked with hypothesis:

- parsing any JSON value, any byte string, or a well-formed document with hostile values in it (NaN,
  infinities, 1e308, 400-digit integers, NUL, unpaired surrogates, wrong types) either yields a document or
  raises pydantic's ValidationError (the gateway's 422) — never anything else;
- a document that parsed evaluates every reading with finite values, at any event times, to True, False or
  None, and never raises: the rules agent runs it on every reading of the tenant.
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.rules import RuleDocument, evaluate, in_scope
from schemas.strict import MAX_NUMBER, check_json

PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METRICS = ["temperature", "pressure", "lat", "lon", "state"]

# -- hostile leaves and arbitrary JSON ---------------------------------------------------------------------
hostile_numbers = st.sampled_from([math.nan, math.inf, -math.inf, 1.8e308, -1.8e308, 2.98e234, 10 ** 400,
                                   -(10 ** 400), 1e15, -1e15, 0.0, -0.0, 5e-324, 2 ** 63, -(2 ** 63) - 1])
hostile_text = st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "\U0010ffff", " ", "a" * 300])
hostile = st.one_of(hostile_numbers, hostile_text, st.booleans(), st.none(), st.floats(), st.integers(),
                    st.text(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                  max_size=2))
json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                    max_size=4), max_leaves=20)

# -- well-formed documents ---------------------------------------------------------------------------------
number = st.floats(min_value=-MAX_NUMBER, max_value=MAX_NUMBER, allow_nan=False) | st.integers(-10 ** 6, 10 ** 6)
lat = st.floats(-90, 90, allow_nan=False)
lon = st.floats(-180, 180, allow_nan=False)
op = st.sampled_from([">", ">=", "<", "<=", "==", "!="])
metric = st.sampled_from(METRICS)
seconds = st.floats(min_value=0.001, max_value=30 * 86400, allow_nan=False)


def _range(lo_hi):
    lo, hi = sorted(lo_hi)
    return lo, hi


leaf = st.one_of(
    st.builds(lambda m, o, v: {"type": "threshold", "metric": m, "op": o, "value": v}, metric, op,
              number | st.booleans() | st.sampled_from(["on", "off", ""])),
    st.builds(lambda m, mm, t: {"type": "range", "metric": m, "min": mm[0], "max": mm[1], "trigger": t}, metric,
              st.tuples(number, number).map(_range), st.sampled_from(["outside", "inside"])),
    st.builds(lambda m, o, v, p, a: {"type": "rate", "metric": m, "op": o, "value": v, "per_s": p, "absolute": a},
              metric, op, number, seconds, st.booleans()),
    st.builds(lambda poly, t: {"type": "geofence", "polygon": poly, "trigger": t},
              st.lists(st.tuples(lat, lon).map(list), min_size=3, max_size=8), st.sampled_from(["outside", "inside"])),
    st.builds(lambda c, r: {"type": "geofence", "center": c, "radius_m": r}, st.tuples(lat, lon).map(list),
              st.floats(min_value=0.001, max_value=20_037_509)),
)
inner = st.recursive(leaf, lambda kids: st.one_of(
    st.builds(lambda s, c: {"type": "for", "for_s": s, "condition": c}, seconds, kids),
    st.builds(lambda k, cs: {"type": k, "conditions": cs}, st.sampled_from(["all", "any"]),
              st.lists(kids, min_size=1, max_size=4))), max_leaves=6)
condition = inner | st.builds(lambda s, m: {"type": "inactivity", "for_s": s, "metric": m}, seconds,
                              st.none() | metric)
documents = st.builds(lambda c: {"name": "r", "condition": c, "actions": [{"type": "alert"}]}, condition)


def _poison(doc, data) -> object:
    """``doc`` with one leaf (or one container) somewhere inside replaced by a hostile value."""
    if isinstance(doc, dict) and doc:
        key = data.draw(st.sampled_from(sorted(doc)))
        if data.draw(st.booleans()):
            return {**doc, key: _poison(doc[key], data)}
        return {**doc, key: data.draw(hostile)}
    if isinstance(doc, list) and doc:
        i = data.draw(st.integers(0, len(doc) - 1))
        return [*doc[:i], _poison(doc[i], data), *doc[i + 1:]]
    return data.draw(hostile)


def _parse(value) -> RuleDocument | None:
    try:
        return RuleDocument.model_validate(value)
    except ValidationError:
        return None


@PROFILE
@given(json_values)
def test_parsing_any_json_value_raises_only_validation_errors(value):
    _parse(value)


@PROFILE
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parsing_any_bytes_raises_only_validation_errors(raw):
    try:
        RuleDocument.model_validate_json(raw)
    except ValidationError:
        pass


@PROFILE
@given(documents, st.data())
def test_a_document_with_a_hostile_value_inside_parses_or_is_refused(doc, data):
    parsed = _parse(_poison(doc, data))
    if parsed is not None:  # whatever was accepted is storable: finite bounded numbers, text without NUL
        check_json(json.loads(json.dumps(parsed.model_dump(exclude_none=True))))  # inf stays inf, tuples lists
        json.dumps(parsed.model_dump(mode="json", exclude_none=True), allow_nan=False).encode("utf-8")


@PROFILE
@given(documents)
def test_every_generated_document_is_accepted(doc):
    assert _parse(doc) is not None, doc


finite_value = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2 ** 63), 2 ** 63 - 1),
                         st.sampled_from([10 ** 400, -(10 ** 400), 1.7976931348623157e308]),  # finite, not small
                         st.booleans(), st.text(max_size=5))
readings = st.lists(st.tuples(st.integers(0, 2 ** 45), st.dictionaries(st.sampled_from(METRICS), finite_value)),
                    min_size=1, max_size=12)


@PROFILE
@given(documents, readings)
def test_evaluating_finite_readings_never_raises(doc, series):
    stored = RuleDocument.model_validate(doc).model_dump(mode="json", exclude_none=True)
    state: dict = {}
    for ts, values in series:
        assert evaluate(stored["condition"], values, ts, state) in (True, False, None)
    assert in_scope(stored.get("scope", {}), "d", None, []) is True
