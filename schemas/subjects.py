"""Which Schema Registry subject holds which record's schema, and the exact text registered (adr/0140).

Subjects follow Confluent's TopicNameStrategy, the default of every registry-aware tool: a topic's values
are ``<topic>-value``. Keys are not registered: they stay UTF-8 strings (``schemas.keys``). The repo's
``avro/*.avsc`` files are the source of truth; the registry holds copies, registered at start-up by the
processes that need them (``runtime.schema_registry``). Pure: no HTTP here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import topics
from .codec import load_schema


def value_subject(topic: str) -> str:
    """The subject of ``topic``'s values (TopicNameStrategy)."""
    return f"{topic}-value"


# subject → record type, in topics.ALL order (a record's first topic comes first)
SUBJECTS: dict[str, str] = {value_subject(t.name): t.record for t in topics.ALL if t.record}


def registered_text(record: str) -> str:
    """The schema text registered for ``record``: its ``.avsc`` as ``schema_text`` writes it."""
    return schema_text(load_schema(record))


def schema_text(schema: Mapping[str, Any]) -> str:
    """An Avro schema as compact JSON, the same bytes from every process (a registry that compares texts
    then finds the existing version instead of adding one).

    The left brace of a string default ``"{}"`` is written as the JSON escape ``\\u007b``: Apicurio 3.0.9
    rewrites the text ``: "{}"`` to ``:{}`` before parsing an Avro schema, which then fails ("Failed to
    discover artifact type from content"). Every JSON parser reads both as the same string."""
    return json.dumps(schema, separators=(",", ":")).replace(':"{}"', ':"\\u007b}"')
