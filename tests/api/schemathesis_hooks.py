"""schemathesis hooks for tests/api/test_schemathesis.py (loaded through ``SCHEMATHESIS_HOOKS``, adr/0198).

A rule's condition nests (``for`` holds one condition, ``all``/``any`` hold a list, each of any type), and the
coverage phase unrolls that recursion three to four levels deep: every leaf variant again inside ``for`` and
``all`` at each level, ~4,300 cases for ``POST /v1/rules``, ~3,000 of them deeper than one level. One level
already sends every leaf variant (valid and each violation) through the nested path of the same pydantic
model; the deeper ones repeat it. Documents of any depth are the hypothesis properties'
(tests/schemas/test_rules_properties.py), and the fuzzing phase keeps generating nested rules of any depth."""

from __future__ import annotations

import schemathesis
from schemathesis.generation.meta import TestPhase

MAX_COVERAGE_NESTING = 1


def nesting(condition: object) -> int:
    """How many conditions deep ``condition`` holds others: 0 for a leaf (or anything that is no condition)."""
    if not isinstance(condition, dict):
        return 0
    inner = [condition.get("condition")]
    if isinstance(condition.get("conditions"), list):
        inner += condition["conditions"]
    return max((1 + nesting(c) for c in inner if isinstance(c, dict)), default=0)


@schemathesis.hook.apply_to(name="POST /v1/rules")
def filter_case(ctx, case) -> bool:
    if case.meta is None or case.meta.phase.name != TestPhase.COVERAGE or not isinstance(case.body, dict):
        return True
    return nesting(case.body.get("condition")) <= MAX_COVERAGE_NESTING
