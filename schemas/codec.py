"""Avro single-object encoding for every fleetstream record (adr/0002).

Wire format of every Kafka value written by fleetstream::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | Avro binary body

This is the Avro specification's own "single object encoding": any Avro library decodes it given the
``.avsc`` files in ``schemas/avro`` (look the fingerprint up, then read the body with that schema).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from .errors import ValueDeserializationError

MAGIC = b"\xc3\x01"
HEADER_LEN = 10

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
        canonical = to_parsing_canonical_form(self.schema)
        self.fingerprint = int(fingerprint(canonical, "CRC-64-AVRO"), 16)
        self.header = MAGIC + struct.pack("<Q", self.fingerprint)

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

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[:2] != MAGIC or len(data) < HEADER_LEN:
            raise ValueDeserializationError(f"{self.name}: not Avro single-object encoded")
        if data[2:HEADER_LEN] != self.header[2:]:
            fp = struct.unpack("<Q", data[2:HEADER_LEN])[0]
            raise ValueDeserializationError(
                f"{self.name}: schema fingerprint {fp:016x} is not {self.fingerprint:016x}"
            )
        try:
            return fastavro.schemaless_reader(io.BytesIO(data[HEADER_LEN:]), self._read_schema, self._read_schema)
        except Exception as exc:  # fastavro raises several types for truncated/corrupt bodies
            raise ValueDeserializationError(f"{self.name}: corrupt Avro body: {exc}") from exc


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """One Avro zig-zag varint at ``pos``: (value, next position)."""
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def telemetry_event_time(data: bytes) -> int:
    """A Telemetry record's ``event_time`` read straight from the wire, without decoding the record:
    tenant_id and device_id (length-prefixed strings) come first, after the 10-byte header. For hot paths
    that need only the time (status activity, benchmark probes)."""
    pos = HEADER_LEN
    for _ in range(2):
        n, pos = _read_long(data, pos)
        pos += n
    return _read_long(data, pos)[0]


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
    if data[:2] != MAGIC or len(data) < HEADER_LEN:
        raise ValueDeserializationError("not Avro single-object encoded")
    fp = struct.unpack("<Q", data[2:HEADER_LEN])[0]
    for name in SCHEMA_FILES:
        c = codec(name)
        if c.fingerprint == fp:
            return c
    raise ValueDeserializationError(f"no fleetstream schema has fingerprint {fp:016x}")
