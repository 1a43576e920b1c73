"""The codec of every fleetstream record: its ``.avsc`` schema, fastavro for the Avro body, and the framing
of ``wire`` around it (adr/0002, adr/0121).

Any Avro library decodes a fleetstream value given the ``.avsc`` files in ``schemas/avro``: the header names
the writer schema (its fingerprint), the rest is the Avro binary body.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import parse_schema

from . import wire
from .errors import ValueDeserializationError
from .wire import HEADER_LEN

SCHEMA_FILES = {
    "telemetry": "telemetry.avsc",
    "device_event": "device_event.avsc",
    "command": "command.avsc",
    "command_ack": "command_ack.avsc",
    "shadow_update": "shadow_update.avsc",
    "alert": "alert.avsc",
    "dead_letter": "dead_letter.avsc",
    "registry_entry": "registry_entry.avsc",
    "tenant_entry": "tenant_entry.avsc",
    "device_type_entry": "device_type_entry.avsc",
    "command_state": "command_state.avsc",
    "shadow_document": "shadow_document.avsc",
    "action_outcome": "action_outcome.avsc",
}


class RecordCodec:
    """Encodes and decodes one record type; instances are cheap to share and thread-safe."""

    def __init__(self, name: str, schema: Mapping[str, Any]):
        self.name = name
        self.schema = parse_schema(dict(schema))
        # Read timestamps as the epoch-millisecond longs they are on the wire: no datetime objects on
        # the hot path. Logical types are not part of the canonical form, so the fingerprint is unchanged.
        self._read_schema = parse_schema(_strip_logical_types(dict(schema)))
        self.fingerprint = wire.schema_id(self.schema)  # what headers name this schema by
        self.header = wire.header(self.fingerprint)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        # One BytesIO reused per batch: the hot path encodes thousands of records per call.
        out = []
        buf = io.BytesIO()
        schema, header, writer = self.schema, self.header, fastavro.schemaless_writer
        for record in records:
            buf.seek(0)
            buf.truncate()
            buf.write(header)
            writer(buf, schema, record)
            out.append(buf.getvalue())
        return out

    def matches(self, data: bytes) -> bool:
        """Whether ``data`` is framed as a record of this schema (its header is this codec's)."""
        return data[:HEADER_LEN] == self.header

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[:HEADER_LEN] != self.header:
            raise ValueDeserializationError(f"{self.name}: {wire.header_error(data, self.fingerprint)}")
        try:
            return fastavro.schemaless_reader(io.BytesIO(data[HEADER_LEN:]), self._read_schema, self._read_schema)
        except Exception as exc:  # fastavro raises several types for truncated/corrupt bodies
            raise ValueDeserializationError(f"{self.name}: corrupt Avro body: {exc}") from exc


# -- Telemetry read and written by hand where decoding or encoding a whole record costs too much ----------
def telemetry_event_time(data: bytes) -> int:
    """A Telemetry record's ``event_time`` read straight from the wire, without decoding the record:
    tenant_id and device_id (strings) come first. For hot paths that need only the time (status activity,
    benchmark probes); ``IndexError`` when the value is not that shape."""
    return wire.read_long(data, wire.skip_strings(data, HEADER_LEN, 2))[0]


def telemetry_tail(device_type: str | None, tags: Sequence[str]) -> bytes:
    """Telemetry's last two fields encoded, ``device_type`` (["null", "string"]) and ``tags`` (strings):
    enriching a record is swapping its tail (streams/validate.py)."""
    dt = wire.encode_union(0) if device_type is None else wire.encode_union(1, wire.encode_string(device_type))
    return dt + wire.encode_array([wire.encode_string(t) for t in tags])


TELEMETRY_PLAIN_TAIL = telemetry_tail(None, ())  # how connectors write a record: not enriched


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def load_schema(name: str) -> dict[str, Any]:
    try:
        filename = SCHEMA_FILES[name]
    except KeyError:
        raise KeyError(f"unknown record type {name!r}; known: {', '.join(sorted(SCHEMA_FILES))}") from None
    return json.loads(resources.files("schemas").joinpath("avro", filename).read_text())


_CODECS: dict[str, RecordCodec] = {}


def codec(name: str) -> RecordCodec:
    """The shared codec of a record type, e.g. ``codec("telemetry")``."""
    c = _CODECS.get(name)
    if c is None:
        c = _CODECS[name] = RecordCodec(name, load_schema(name))
    return c


def codec_by_fingerprint(data: bytes) -> RecordCodec:
    """Finds the codec of any fleetstream record from its header (used by ``topics tail``)."""
    sid = wire.parse_header(data)
    for name in SCHEMA_FILES:
        c = codec(name)
        if c.fingerprint == sid:
            return c
    raise ValueDeserializationError(f"no fleetstream schema has {wire.describe(sid)}")
