"""The codec of every fleetstream record: its ``.avsc`` schema, fastavro for the Avro body, and the framing
of ``wire`` around it (adr/0002, adr/0121, adr/0140).

Values carry the Confluent wire format: a header naming the writer schema by its Schema Registry id, then
the Avro binary body. Any registry-aware Avro tool decodes them (confluent-kafka's ``AvroDeserializer``,
ClickHouse's ``AvroConfluent``, Kafka Connect's converters). The ids are not computed here: each process
binds them once at start-up (``bind_ids``, called by ``runtime.schema_registry``), with a way to fetch a
writer schema this process does not know (an older or newer version of a record); ``codec()`` refuses to
work before that.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    "rule_entry": "rule_entry.avsc",
}

# What fetches a writer schema by id (the registry's text, parsed), None when the registry has no such id.
WriterFetch = Callable[[int], "Mapping[str, Any] | None"]


class SchemaIdsUnbound(RuntimeError):
    """A codec was asked for before the process bound its schema ids (a start-up bug, not bad input)."""


class RecordCodec:
    """Encodes and decodes one record type; instances are cheap to share and thread-safe.

    It writes the repo's schema under ``schema_id``. It reads any writer version of its record: values
    written with its own id (the hot path) directly, others through Avro schema resolution from the
    writer schema of their id (adr/0140), with the repo's schema as the reader schema."""

    def __init__(self, name: str, schema: Mapping[str, Any], schema_id: int):
        self.name = name
        self.schema = parse_schema(dict(schema))
        self.full_name = _full_name(schema)
        # Read timestamps as the epoch-millisecond longs they are on the wire: no datetime objects on
        # the hot path (logical types do not change the encoding).
        self._read_schema = parse_schema(_strip_logical_types(dict(schema)))
        self.schema_id = schema_id  # what headers name this schema by: its Schema Registry id
        self.header = wire.header(schema_id)
        # a hand-written reader of the repo's own version (None: fastavro reads it); it answers None for
        # anything but the plain encoding, and fastavro decides then (schemas/telemetry_wire.py, adr/0214)
        self.fast_decode: Callable[[bytes], dict[str, Any] | None] | None = None

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
        """Whether ``data`` was written with exactly this codec's schema (its header is this codec's); a
        value of another version of the record does not match but still decodes."""
        return data[:HEADER_LEN] == self.header

    def decode(self, data: bytes) -> dict[str, Any]:
        if data[:HEADER_LEN] == self.header:
            if self.fast_decode is not None and (rec := self.fast_decode(data)) is not None:
                return rec
            writer = self._read_schema
        else:
            writer = self._writer_of(data)
        try:
            return fastavro.schemaless_reader(io.BytesIO(data[HEADER_LEN:]), writer, self._read_schema)
        except Exception as exc:  # fastavro raises several types for truncated/corrupt bodies
            raise ValueDeserializationError(f"{self.name}: corrupt Avro body: {exc}") from exc

    def _writer_of(self, data: bytes) -> Any:
        """The (parsed) writer schema of a value written with another id than this codec's."""
        try:
            sid = wire.parse_header(data)
        except ValueDeserializationError as exc:
            raise ValueDeserializationError(f"{self.name}: {exc}") from None
        full_name, schema = _IDS.writer(sid)
        if full_name != self.full_name:
            raise ValueDeserializationError(
                f"{self.name}: {wire.describe(sid)} is a {full_name}, not a {self.full_name}")
        return schema


class _Ids:
    """The schema ids this process writes with, and every writer schema it has met, by id."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.fetch: WriterFetch | None = None
        self.writers: dict[int, tuple[str, Any]] = {}  # id → (record full name, parsed schema for reading)
        self.unknown: set[int] = set()  # ids the registry does not have (bounded: garbage must not grow it)
        self.lock = threading.Lock()

    def writer(self, sid: int) -> tuple[str, Any]:
        w = self.writers.get(sid)
        if w is not None:
            return w
        if sid in self.unknown or self.fetch is None:
            raise ValueDeserializationError(f"unknown {wire.describe(sid)}")
        schema = self.fetch(sid)  # may raise: the registry is unreachable (not the record's fault)
        if schema is None:
            with self.lock:
                if len(self.unknown) < 10_000:
                    self.unknown.add(sid)
            raise ValueDeserializationError(f"unknown {wire.describe(sid)}: the Schema Registry has no such schema")
        try:
            w = (_full_name(schema), parse_schema(_strip_logical_types(dict(schema))))
        except Exception as exc:
            raise ValueDeserializationError(f"{wire.describe(sid)}: unusable writer schema: {exc}") from exc
        self.writers[sid] = w
        return w


_IDS = _Ids()
_CODECS: dict[str, RecordCodec] = {}
# Schema ids for processes that talk to no registry (unit tests, pure benchmarks): never written to a topic
# another process reads. Far above what a registry hands out, so a mix-up fails loudly.
LOCAL_ID_BASE = 0x7F000000


def bind_ids(ids: Mapping[str, int], fetch: WriterFetch | None = None) -> None:
    """Sets the schema id each record type is written with (``ids``: record type → registry id, every
    record type), and how to fetch a writer schema by an id not among them. Called once at process
    start-up, by ``runtime.schema_registry.bind`` (or ``bind_local_ids``); forgets codecs made before."""
    missing = set(SCHEMA_FILES) - set(ids)
    if missing:
        raise ValueError(f"no schema id for {', '.join(sorted(missing))}")
    fresh = _Ids()
    fresh.ids, fresh.fetch = dict(ids), fetch
    for name, sid in ids.items():  # the repo's schemas are the writers of their own ids: no fetch for those
        schema = load_schema(name)
        fresh.writers[sid] = (_full_name(schema), parse_schema(_strip_logical_types(schema)))
    global _IDS
    _IDS = fresh
    _CODECS.clear()


def bind_local_ids() -> dict[str, int]:
    """Binds fixed ids without a registry, for code whose records no other process reads (unit tests, the
    wire benchmark). Returns them."""
    ids = {name: LOCAL_ID_BASE + i for i, name in enumerate(SCHEMA_FILES)}
    bind_ids(ids)
    return ids


def bound_ids() -> dict[str, int]:
    """Record type → the id this process writes it with ({} before ``bind_ids``)."""
    return dict(_IDS.ids)


def current_binding() -> object:
    """What is bound now (ids, fetch, writer schemas met), for ``restore_binding``: a process that starts a
    second stack of its own (a test) binds that stack's registry and puts the first one back after."""
    return _IDS


def restore_binding(binding: object) -> None:
    global _IDS
    assert isinstance(binding, _Ids)
    _IDS = binding
    _CODECS.clear()


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


def _full_name(schema: Mapping[str, Any]) -> str:
    name = schema.get("name", "")
    return name if "." in name or not schema.get("namespace") else f"{schema['namespace']}.{name}"


def load_schema(name: str) -> dict[str, Any]:
    try:
        filename = SCHEMA_FILES[name]
    except KeyError:
        raise KeyError(f"unknown record type {name!r}; known: {', '.join(sorted(SCHEMA_FILES))}") from None
    return json.loads(resources.files("schemas").joinpath("avro", filename).read_text())


def codec(name: str) -> RecordCodec:
    """The shared codec of a record type, e.g. ``codec("telemetry")``."""
    c = _CODECS.get(name)
    if c is None:
        schema = load_schema(name)  # an unknown name is a KeyError naming the known ones
        sid = _IDS.ids.get(name)
        if sid is None:
            raise SchemaIdsUnbound("schema ids are not bound: a process binds them at start-up with "
                                   "runtime.schema_registry.bind(settings) (adr/0140)")
        c = RecordCodec(name, schema, sid)
        if name == "telemetry":  # imported here: telemetry_wire builds on this module
            from .telemetry_wire import decode_telemetry
            c.fast_decode = decode_telemetry
        _CODECS[name] = c
    return c


def codec_for(data: bytes) -> RecordCodec:
    """The codec of any fleetstream record, found from the schema id in its header (``topics tail``, the
    sinks and the live hub on topics of several record types)."""
    sid = wire.parse_header(data)
    full_name, _ = _IDS.writer(sid)
    for name in SCHEMA_FILES:
        c = codec(name)
        if c.full_name == full_name:
            return c
    raise ValueDeserializationError(f"{wire.describe(sid)} is a {full_name}, no fleetstream record")
