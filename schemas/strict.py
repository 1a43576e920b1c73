"""Strict input types for what an API caller sends and the platform stores (adr/0109).

Python's ``json`` accepts what Postgres, ClickHouse and other JSON parsers refuse: ``\\u0000`` (Postgres text
and jsonb cannot hold NUL), unpaired surrogates such as ``"\\ud800"`` (not Unicode, so not encodable as
UTF-8), ``NaN``/``Infinity`` and numbers beyond a float (``1.8e308`` parses as ``inf``). Each of these
reached a database and came back as a 500. The types here refuse them at validation, so the caller gets a
422 that names the field, whatever route the value came through.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_JSON_DEPTH = 32
MAX_NUMBER = 1e15  # below 2**53: every integral value round-trips exactly through jsonb and int64 parsers
TEXT_PATTERN = r"^[^\x00]*$"  # what JSON Schema can say; unpaired surrogates are refused by the validator


def check_text(value: str) -> str:
    """``value`` unchanged, or ValueError if it holds NUL or an unpaired surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"must be valid Unicode (an unpaired surrogate at position {exc.start})") from None
    return value


def check_number(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) > MAX_NUMBER:
        raise ValueError(f"must be between -{MAX_NUMBER:g} and {MAX_NUMBER:g}")
    return value


def printable(text: str) -> str:
    """``text`` safe to put in an error message (an unpaired surrogate becomes ``\\ud800``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_json(value: Any, path: str = "$", depth: int = 0) -> Any:
    """A free-form JSON value (attributes, params, desired state): every key and string passes
    ``check_text``, every number is finite and at most ``MAX_NUMBER`` in size, nesting is at most
    ``MAX_JSON_DEPTH`` levels. Raises ValueError naming the first offending place."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        if isinstance(value, str):
            check_text(value)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if abs(value) > MAX_NUMBER:
                raise ValueError(f"must be between -{MAX_NUMBER:g} and {MAX_NUMBER:g}")
        elif isinstance(value, float):
            check_number(value)
        elif isinstance(value, dict):
            for key in value:
                try:
                    check_text(key)
                except ValueError as exc:
                    raise ValueError(f"a key {exc}") from None
        elif not isinstance(value, list):
            raise ValueError(f"{type(value).__name__} is not a JSON value")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if isinstance(value, dict):
        for key, item in value.items():
            check_json(item, f"{path}.{printable(key)}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json(item, f"{path}[{i}]", depth + 1)
    return value


def _json_object(value: dict) -> dict:
    check_json(value)
    return value


Text = Annotated[str, AfterValidator(check_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
"""Text that ends up in Postgres or ClickHouse: no NUL, no unpaired surrogate."""

Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_NUMBER, le=MAX_NUMBER)]
"""A finite number of bounded size (rule thresholds and the like)."""

JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
"""A free-form JSON object checked by ``check_json``."""
