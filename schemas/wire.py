"""The bytes of every fleetstream Kafka value: its framing, and the Avro binary primitives that the hot paths
write and read by hand (adr/0121).

Framing (adr/0002, adr/0140) is the Confluent wire format, what every registry-aware Kafka tool reads::

    00 | 4-byte big-endian schema id (assigned by the Schema Registry) | Avro binary body

Only the "Framing" section below knows that: ``header``/``parse_header`` (the pair every writer and reader
goes through), ``header_error``, ``describe`` and ``HEADER_LEN``. The ids themselves come from the
registry at start-up (``runtime.schema_registry``, bound in ``schemas.codec``): this module never computes
one. A header is a fixed prefix per schema, so "is this value of schema S" is ``value[:HEADER_LEN] ==
header`` and the body starts at ``HEADER_LEN`` whatever the framing.

The primitives are the Avro specification's binary encoding written out in Python for the records that are
too hot for fastavro's per-record schema walk (adr/0045, 0065): zig-zag varint longs, strings and bytes,
doubles, booleans, union branches, arrays, the object container file; readers at a position; and peeks at
a framed record's leading fields without decoding it. Readers raise ``IndexError`` on truncated or negative
lengths (``UnicodeDecodeError`` on a bad string); peeks return None instead.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ValueDeserializationError

# -- Framing ---------------------------------------------------------------------------------------------
_MAGIC = 0
_HEADER = struct.Struct(">BI")  # magic byte, then the registry's schema id (unsigned 4 bytes, big-endian)
HEADER_LEN = 5  # bytes before the Avro body of every framed value


def header(sid: int) -> bytes:
    """The bytes written before the Avro body of every value of schema ``sid`` (a registry id)."""
    return _HEADER.pack(_MAGIC, sid)


def parse_header(data: bytes) -> int:
    """The schema id a value's header names; ``ValueDeserializationError`` when it has no header."""
    if len(data) < HEADER_LEN or data[0] != _MAGIC:
        raise ValueDeserializationError("not in the Confluent wire format (magic byte 0, then a 4-byte schema id)")
    return _HEADER.unpack_from(data)[1]


def header_error(data: bytes, expected: int) -> str:
    """Why ``data`` is not framed as a value of schema ``expected``, for an error message."""
    try:
        found = parse_header(data)
    except ValueDeserializationError as exc:
        return str(exc)
    return f"{describe(found)} is not {describe(expected)}"


def describe(sid: int) -> str:
    """A schema id as messages show it."""
    return f"schema id {sid}"


# -- Encoding --------------------------------------------------------------------------------------------
_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))  # most longs on the wire: lengths, counts, branches

encode_double = struct.Struct("<d").pack  # Avro double: 8 bytes little-endian IEEE 754
END_OF_BLOCKS = b"\x00"  # closes an array or map: a block of count 0


def encode_long(n: int) -> bytes:
    """Avro ``long``/``int``: zig-zag, then base-128 varint, least significant group first."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_bytes(b: bytes) -> bytes:
    """Avro ``bytes``: length, then the bytes."""
    return encode_long(len(b)) + b


def encode_string(s: str) -> bytes:
    """Avro ``string``: UTF-8 ``bytes``."""
    b = s.encode()
    return encode_long(len(b)) + b


def encode_boolean(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def encode_union(branch: int, value: bytes = b"") -> bytes:
    """A union value: the branch's position in the union's types, then the value (nothing for null)."""
    return encode_long(branch) + value


def encode_array(items: Sequence[bytes]) -> bytes:
    """An Avro array (or a map, given encoded key+value pairs) of already-encoded items, as one block."""
    if not items:
        return END_OF_BLOCKS
    return b"".join((encode_long(len(items)), *items, END_OF_BLOCKS))


# -- Decoding --------------------------------------------------------------------------------------------
_DOUBLE = struct.Struct("<d").unpack_from


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """The Avro ``long`` at ``pos``: (value, next position)."""
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    result, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = buf[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos + 1
        shift += 7


def read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = read_long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise IndexError(f"Avro bytes of length {n} at {pos} run past the end ({len(buf)})")
    return buf[pos:end], end


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    b, pos = read_bytes(buf, pos)
    return b.decode(), pos


def skip_strings(buf: bytes, pos: int, count: int) -> int:
    """The position after ``count`` strings (or bytes) starting at ``pos``, without reading them."""
    while count:
        n, pos = read_long(buf, pos)
        if n < 0:
            raise IndexError(f"negative Avro length {n} before {pos}")
        pos += n
        count -= 1
    return pos


def read_double(buf: bytes, pos: int) -> tuple[float, int]:
    try:
        return _DOUBLE(buf, pos)[0], pos + 8
    except struct.error:
        raise IndexError(f"Avro double at {pos} runs past the end ({len(buf)})") from None


def read_boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    return buf[pos] != 0, pos + 1


read_union = read_long  # a union value starts with its branch: (branch, position of the value)


# -- Peeks: a framed record's leading fields, read off the wire without decoding the record ------------
def peek_string(value: bytes | None, index: int = 0) -> str | None:
    """Field ``index`` of a framed record whose first ``index + 1`` fields are strings (the tenant and
    device of every record that has them); None if ``value`` is not that shape."""
    # runs for every record a live gateway reads: skip_strings and read_string are written out
    try:
        pos = HEADER_LEN
        while index:  # not range(): a range costs about as much as the tenant's read
            n, pos = read_long(value, pos)
            if n < 0:
                return None
            pos += n
            index -= 1
        n, pos = read_long(value, pos)
        end = pos + n
        if n < 0 or end > len(value):
            return None
        return value[pos:end].decode()
    except (IndexError, TypeError, UnicodeDecodeError):
        return None


def peek_long(value: bytes | None, strings: int, index: int = 0) -> int | None:
    """Long ``index`` of a run of long fields that follows ``strings`` leading string fields of a framed
    record (e.g. Telemetry's ``receive_time``: ``strings=2, index=1``); None if ``value`` is not that
    shape."""
    try:
        pos = HEADER_LEN
        while strings:  # not range(): a range costs about as much as a read here
            n, pos = read_long(value, pos)
            if n < 0:
                return None
            pos += n
            strings -= 1
        while index:
            pos = read_long(value, pos)[1]
            index -= 1
        return read_long(value, pos)[0]
    except (IndexError, TypeError):
        return None


# -- Avro object container files (the Avro specification's file format) ---------------------------------
_CONTAINER_MAGIC = b"Obj\x01"


def container_header(schema: Mapping[str, Any], sync: bytes, codec: str = "null") -> bytes:
    """The header of an Avro object container file of ``schema`` whose blocks end with ``sync`` (16 bytes)."""
    if len(sync) != 16:
        raise ValueError("an Avro sync marker is 16 bytes")
    meta = {"avro.schema": json.dumps(schema, separators=(",", ":")).encode(), "avro.codec": codec.encode()}
    entries = [encode_string(k) + encode_bytes(v) for k, v in meta.items()]  # a map: an array of pairs
    return b"".join((_CONTAINER_MAGIC, encode_array(entries), sync))


def container_file(file_header: bytes, count: int, body: bytes, sync: bytes) -> bytes:
    """A whole container file: ``file_header`` and one block of ``count`` concatenated datums, ``body``."""
    return b"".join((file_header, encode_long(count), encode_long(len(body)), body, sync))
