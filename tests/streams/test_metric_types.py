"""The typed-metric rules (adr/0182) as pure functions: what a declaration may say, and which values break it."""

from __future__ import annotations

import pytest

from schemas.metric_types import declaration_problem, reading_problem

DECL = {"t": {"type": "number", "unit": "degC", "min": -40, "max": 125}, "n": {"type": "integer", "min": 0},
        "on": {"type": "boolean"}, "mode": {"type": "string", "enum": ["eco", "boost"]},
        "level": {"type": "integer", "enum": [1, 2, 3]}}


@pytest.mark.parametrize("values", [
    {"t": 21.5}, {"t": -40.0}, {"t": 125.0}, {"n": 3.0}, {"on": False}, {"mode": "eco"}, {"level": 2.0},
    {"undeclared": "anything", "other": True}, {},
])
def test_values_that_keep_their_declarations_pass(values):
    assert reading_problem(values, DECL) is None


@pytest.mark.parametrize(("values", "code", "text"), [
    ({"t": "hot"}, "metric_type", "t='hot' is not a number"),
    ({"t": True}, "metric_type", "t=True is not a number"),
    ({"n": 2.5}, "metric_type", "n=2.5 is not an integer"),
    ({"on": 1.0}, "metric_type", "on=1.0 is not a boolean"),
    ({"mode": 1.0}, "metric_type", "mode=1.0 is not a string"),
    ({"t": 125.5}, "metric_range", "t=125.5 is outside [-40, 125] degC"),
    ({"n": -1.0}, "metric_range", "n=-1.0 is outside [0, inf]"),
    ({"mode": "turbo"}, "metric_enum", "mode='turbo' is not one of 'eco', 'boost'"),
    ({"level": 4.0}, "metric_enum", "level=4.0 is not one of 1, 2, 3"),
])
def test_values_that_break_a_declaration_are_refused_with_a_reason(values, code, text):
    got = reading_problem(values, DECL)
    assert got is not None and got[0] == code and text in got[1]


def test_every_broken_metric_is_named_and_the_first_gives_the_code():
    code, reason = reading_problem({"ok": 1.0, "t": 900.0, "mode": "x", "on": "yes"}, DECL)
    assert code == "metric_range"
    assert "t=900.0" in reason and "mode='x'" in reason and "on='yes'" in reason


def test_long_values_are_shortened_in_the_reason():
    _code, reason = reading_problem({"t": "x" * 10_000}, DECL)
    assert len(reason) < 200


@pytest.mark.parametrize(("decl", "problem"), [
    ({"type": "decimal"}, "type must be one of"),
    ({"type": "string", "min": 1}, "min/max apply to number and integer metrics only"),
    ({"type": "number", "min": 2, "max": 1}, "is above max"),
    ({"type": "number", "max": float("inf")}, "finite"),
    ({"type": "integer", "enum": [1.5]}, "is not of type integer"),
    ({"type": "boolean", "enum": []}, "enum needs"),
])
def test_declarations_that_cannot_apply_are_refused(decl, problem):
    assert problem in (declaration_problem("m", decl) or "")


def test_good_declarations_pass():
    for d in DECL.values():
        assert declaration_problem("m", d) is None
