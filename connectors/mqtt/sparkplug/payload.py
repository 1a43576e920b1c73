"""Sparkplug B payloads (Sparkplug 3.0, chapter 6): the protobuf ``Payload`` decoded and, for NCMD/DCMD,
encoded.

The message is described here from the specification's field numbers and built at import time through
protobuf's descriptor API, so no generated code and no ``protoc`` are needed (adr/0155). Only what a host
application reads is described; the rest (DataSet, Template, PropertySet, MetaData, extensions) stays in
protobuf's unknown fields, and a metric carrying one of those values is refused by datatype.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

# Sparkplug 3.0 §6.4.16 datatypes
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64 = 1, 2, 3, 4, 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = 9, 10, 11, 12, 13, 14, 15
DATASET, BYTES, FILE, TEMPLATE = 16, 17, 18, 19
SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
NUMERIC = {INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, DATETIME}
TEXTUAL = {STRING, TEXT, UUID}
TYPE_NAMES = {1: "Int8", 2: "Int16", 3: "Int32", 4: "Int64", 5: "UInt8", 6: "UInt16", 7: "UInt32", 8: "UInt64",
              9: "Float", 10: "Double", 11: "Boolean", 12: "String", 13: "DateTime", 14: "Text", 15: "UUID",
              16: "DataSet", 17: "Bytes", 18: "File", 19: "Template"}


def _build():
    f = descriptor_pb2.FieldDescriptorProto
    opt = f.LABEL_OPTIONAL
    fd = descriptor_pb2.FileDescriptorProto(name="fleetstream_sparkplug_b.proto",
                                            package="fleetstream.sparkplug", syntax="proto2")
    payload = fd.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, num, typ in (("name", 1, f.TYPE_STRING), ("alias", 2, f.TYPE_UINT64), ("timestamp", 3, f.TYPE_UINT64),
                           ("datatype", 4, f.TYPE_UINT32), ("is_historical", 5, f.TYPE_BOOL),
                           ("is_transient", 6, f.TYPE_BOOL), ("is_null", 7, f.TYPE_BOOL)):
        metric.field.add(name=name, number=num, type=typ, label=opt)
    for name, num, typ in (("int_value", 10, f.TYPE_UINT32), ("long_value", 11, f.TYPE_UINT64),
                           ("float_value", 12, f.TYPE_FLOAT), ("double_value", 13, f.TYPE_DOUBLE),
                           ("boolean_value", 14, f.TYPE_BOOL), ("string_value", 15, f.TYPE_STRING),
                           ("bytes_value", 16, f.TYPE_BYTES)):
        metric.field.add(name=name, number=num, type=typ, label=opt, oneof_index=0)
    payload.field.add(name="timestamp", number=1, type=f.TYPE_UINT64, label=opt)
    payload.field.add(name="metrics", number=2, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                      type_name=".fleetstream.sparkplug.Payload.Metric")
    payload.field.add(name="seq", number=3, type=f.TYPE_UINT64, label=opt)
    payload.field.add(name="uuid", number=4, type=f.TYPE_STRING, label=opt)
    payload.field.add(name="body", number=5, type=f.TYPE_BYTES, label=opt)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fleetstream.sparkplug.Payload"))


Payload = _build()


class InvalidPayload(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Metric:
    name: str | None
    alias: int | None
    timestamp: int | None
    datatype: int | None
    value: object  # None for a null metric or one whose value kind is not read here
    is_null: bool
    has_value: bool  # a value of a kind described here was present (False: null, or DataSet/Template/…)


@dataclass(frozen=True, slots=True)
class Decoded:
    timestamp: int | None
    seq: int | None
    metrics: list[Metric]


def decode(raw: bytes) -> Decoded:
    msg = Payload()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, RuntimeError) as exc:  # RuntimeError: recursion limits in the C implementation
        raise InvalidPayload(f"not a Sparkplug B payload: {exc}") from None
    metrics = []
    for m in msg.metrics:
        kind = m.WhichOneof("value")
        metrics.append(Metric(m.name if m.HasField("name") else None, m.alias if m.HasField("alias") else None,
                              m.timestamp if m.HasField("timestamp") else None,
                              m.datatype if m.HasField("datatype") else None,
                              getattr(m, kind) if kind else None, m.is_null, kind is not None))
    return Decoded(msg.timestamp if msg.HasField("timestamp") else None,
                   msg.seq if msg.HasField("seq") else None, metrics)


def typed_value(datatype: int, raw: object) -> object:
    """The metric's value as its datatype means it (§6.4.16: signed integers travel two's-complement in the
    unsigned int/long fields)."""
    bits = SIGNED_BITS.get(datatype)
    if bits is None or not isinstance(raw, int):
        return raw
    width = 64 if bits == 64 else 32
    if raw >= 1 << (width - 1):
        return raw - (1 << width)
    if bits < 32 and raw >= 1 << (bits - 1):  # writers that fill only the type's own low bits
        return raw - (1 << bits)
    return raw


def encode_command(timestamp: int, metrics: list[tuple[str, int, object]]) -> bytes:
    """An NCMD/DCMD payload: (name, datatype, value) metrics, no seq (§6.4.18: commands carry none)."""
    msg = Payload(timestamp=timestamp)
    for name, datatype, value in metrics:
        m = msg.metrics.add(name=name, timestamp=timestamp, datatype=datatype)
        if datatype == BOOLEAN:
            m.boolean_value = bool(value)
        elif datatype in (FLOAT,):
            m.float_value = float(value)
        elif datatype == DOUBLE:
            m.double_value = float(value)
        elif datatype in TEXTUAL:
            m.string_value = str(value)
        elif datatype in (INT64, UINT64, DATETIME):
            m.long_value = int(value) & ((1 << 64) - 1)
        elif datatype in SIGNED_BITS:  # two's complement in the type's own width: what pysparkplug reads,
            m.int_value = int(value) & ((1 << SIGNED_BITS[datatype]) - 1)  # and Tahu's casts read it the same
        elif datatype in NUMERIC:
            m.int_value = int(value)
        else:
            raise ValueError(f"cannot send a {TYPE_NAMES.get(datatype, datatype)} metric")
    return msg.SerializeToString()
