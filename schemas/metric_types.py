"""Typed metrics (adr/0182): what a device type may declare about a metric, and the check of a reading's values
against those declarations. The gateway validates declarations with ``declaration_problem``; the validate agent
refuses a reading with ``reading_problem``. Metrics a type does not declare are not checked.

Values arrive as the telemetry record carries them (double, boolean or string): an ``integer`` is a double
with no fractional part, and a boolean is never a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

TYPES = ("number", "integer", "boolean", "string")
MAX_METRICS = 500  # declarations per device type
MAX_ENUM = 100
# reason codes of refused readings (dead letters)
TYPE, RANGE, ENUM = "metric_type", "metric_range", "metric_enum"


def declaration_problem(name: str, d: Mapping[str, Any]) -> str | None:
    """Why the declaration of metric ``name`` cannot be applied, or None."""
    t = d.get("type")
    if t not in TYPES:
        return f"metric {name!r}: type must be one of {', '.join(TYPES)}"
    lo, hi, enum = d.get("min"), d.get("max"), d.get("enum")
    if (lo is not None or hi is not None) and t not in ("number", "integer"):
        return f"metric {name!r}: min/max apply to number and integer metrics only"
    for bound in (lo, hi):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)
                                  or not math.isfinite(bound)):
            return f"metric {name!r}: min and max must be finite numbers"
    if lo is not None and hi is not None and lo > hi:
        return f"metric {name!r}: min {lo} is above max {hi}"
    if enum is not None:
        if not enum or len(enum) > MAX_ENUM:
            return f"metric {name!r}: enum needs 1 to {MAX_ENUM} values"
        for v in enum:
            if not _has_type(t, v):
                return f"metric {name!r}: enum value {v!r} is not of type {t}"
    return None


def _has_type(t: str, v: Any) -> bool:
    if t == "boolean":
        return isinstance(v, bool)
    if t == "string":
        return isinstance(v, str)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return t == "number" or (math.isfinite(v) and float(v).is_integer())


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:37]}...'"


def reading_problem(values: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]]) -> tuple[str, str] | None:
    """(code, reason) when a value breaks its metric's declaration, naming every broken metric; else None."""
    broken: list[tuple[str, str]] = []
    for name, v in values.items():
        d = declared.get(name)
        if d is None:
            continue
        t = d["type"]
        if not _has_type(t, v):
            broken.append((TYPE, f"{name}={_show(v)} is not a{'n' if t == 'integer' else ''} {t}"))
            continue
        lo, hi, enum = d.get("min"), d.get("max"), d.get("enum")
        if lo is not None and v < lo or hi is not None and v > hi:
            unit = f" {d['unit']}" if d.get("unit") else ""
            broken.append((RANGE, f"{name}={_show(v)} is outside [{_bound(lo, '-inf')}, {_bound(hi, 'inf')}]{unit}"))
        elif enum is not None and not any(_has_type(t, e) and e == v for e in enum):
            broken.append((ENUM, f"{name}={_show(v)} is not one of {', '.join(_show(e) for e in enum[:10])}"
                                 f"{' …' if len(enum) > 10 else ''}"))
    if not broken:
        return None
    return broken[0][0], "breaks the device type's metric declarations: " + "; ".join(r for _c, r in broken[:20])


def _bound(b: float | None, none: str) -> str:
    return none if b is None else f"{b:g}"
