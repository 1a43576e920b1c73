"""The hand-written Avro pair for the one hot record, ``Telemetry`` (schemas/avro/telemetry.avsc): an encoder
for the connectors (adr/0045) and a decoder for every reader of the repo's own version (adr/0214).

fastavro walks the parsed schema for every record (~10 µs to write, ~8 µs to read a 3-value reading here);
these write and read the same bytes directly with ``schemas.wire``'s primitives, fields in schema order.
Both are exact or step aside: the encoder falls back to fastavro for any value it does not write itself,
and the decoder answers None (the codec then lets fastavro decide) for anything but the plain encoding
(a negative block count, a varint longer than 9 bytes, a boolean byte other than 0/1, a union branch out of
range, a truncated or non-UTF-8 body), so what is accepted, refused and read is fastavro's.
``tests/schemas/test_telemetry_wire.py`` checks both against fastavro, byte for byte and record for record.
"""

from __future__ import annotations

import struct

from . import wire
from .codec import TELEMETRY_PLAIN_TAIL, codec
from .wire import HEADER_LEN

# -- decoding ------------------------------------------------------------------------------------------------
_read_double = struct.Struct("<d").unpack_from
_read_long, _read_string = wire.read_long, wire.read_string
_MAX_VARINT = 9  # bytes: 63 bits, where fastavro's uint64 arithmetic cannot wrap; longer ones go to fastavro
_MAX_TIMES = 4096  # timestamps remembered by their encoding; cleared, not evicted, when full
_times: dict[bytes, int] = {}  # shared by the threads of a process: a lost entry is only read again


def _read_time(buf: bytes, pos: int, times: dict[bytes, int]) -> tuple[int, int]:
    """A timestamp: epoch milliseconds are 6-byte varints, and they repeat (one receive time per burst of a
    connector, device clocks within a millisecond), so a 6-byte slice seen before is looked up instead of read
    byte by byte (~1 µs). Only slices that were a whole 6-byte varint are remembered, so a hit is one."""
    t = times.get(buf[pos:pos + 6])
    if t is not None:
        return t, pos + 6
    t, end = _read_long(buf, pos)
    if end - pos > _MAX_VARINT:
        raise IndexError("varint longer than 9 bytes")
    if end - pos == 6:
        if len(times) >= _MAX_TIMES:
            times.clear()
        times[buf[pos:end]] = t
    return t, end


def _short_string(buf: bytes, pos: int) -> tuple[str, int]:
    """A string whose one-byte length (< 64) is read inline, the common case; a string that runs past the end
    comes back short, and the read that follows it raises."""
    n = buf[pos]
    if n < 0x80 and not n & 1:
        end = pos + 1 + (n >> 1)
        return buf[pos + 1:end].decode(), end
    return _read_string(buf, pos)


def _block_count(buf: bytes, pos: int) -> tuple[int, int]:
    """An array's or map's block count; ValueError for a negative one (a block with its byte size, which
    fastavro reads)."""
    n = buf[pos]
    if n < 0x80:
        if n & 1:
            raise ValueError("negative block count")
        return n >> 1, pos + 1
    n, pos = _read_long(buf, pos)
    if n < 0:
        raise ValueError("negative block count")
    return n, pos


def decode_telemetry(data: bytes) -> dict | None:
    """The record of a framed Telemetry value written with the repo's schema (header not checked), or None
    when the body is anything but its plain encoding: the caller then asks fastavro."""
    try:
        tenant, pos = _short_string(data, HEADER_LEN)
        device, pos = _short_string(data, pos)
        event_time, pos = _read_time(data, pos, _times)
        receive_time, pos = _read_time(data, pos, _times)
        protocol, pos = _short_string(data, pos)
        values = {}
        while True:  # map blocks of (key, union) pairs, until a count of 0
            n, pos = _block_count(data, pos)
            if not n:
                break
            for _ in range(n):
                k = data[pos]  # a metric name: _short_string written out, one call less per value
                if k < 0x80 and not k & 1:
                    end = pos + 1 + (k >> 1)
                    key, pos = data[pos + 1:end].decode(), end
                else:
                    key, pos = _read_string(data, pos)
                branch = data[pos]
                if branch == 0:  # double
                    values[key] = _read_double(data, pos + 1)[0]
                    pos += 9
                elif branch == 2:  # boolean
                    v = data[pos + 1]
                    if v > 1:
                        return None
                    values[key] = v == 1
                    pos += 2
                elif branch == 4:  # string
                    values[key], pos = _read_string(data, pos + 1)
                else:
                    return None
        branch = data[pos]
        if branch == 0:
            device_type, pos = None, pos + 1
        elif branch == 2:
            device_type, pos = _read_string(data, pos + 1)
        else:
            return None
        tags = []
        while True:
            n, pos = _block_count(data, pos)
            if not n:
                break
            for _ in range(n):
                tag, pos = _read_string(data, pos)
                tags.append(tag)
    except Exception:  # IndexError, ValueError, UnicodeDecodeError, struct.error: fastavro decides and words it
        return None
    return {"tenant_id": tenant, "device_id": device, "event_time": event_time, "receive_time": receive_time,
            "protocol": protocol, "values": values, "device_type": device_type, "tags": tags}


# -- encoding (adr/0045) ------------------------------------------------------------------------------------
_MAX_CACHE = 200_000  # device prefixes; a cache this size costs ~30 MB and is cleared, not evicted, when full

_long, _string, _double = wire.encode_long, wire.encode_string, wire.encode_double
# the union of a metric value: ["double", "boolean", "string"]
_DOUBLE = wire.encode_union(0)
_TRUE, _FALSE = wire.encode_union(1, wire.encode_boolean(True)), wire.encode_union(1, wire.encode_boolean(False))
_STRING = wire.encode_union(2)
# after the values map's last block: the last two fields as connectors leave them (no type, no tags)
_END = wire.END_OF_BLOCKS + TELEMETRY_PLAIN_TAIL


class TelemetryEncoder:
    """``encode(tenant, device, event_time, receive_time, values)`` → the exact bytes of
    ``codec("telemetry").encode(record)`` with ``device_type`` None and no tags. Not thread-safe for
    writers racing on the caches, which is harmless: a lost cache entry is recomputed."""

    def __init__(self, protocol: str):
        self._codec = codec("telemetry")
        self._header = self._codec.header
        self._protocol = protocol
        self._protocol_bytes = _string(protocol)
        self._prefixes: dict[tuple[str, str], bytes] = {}
        self._keys: dict[str, bytes] = {}
        # timestamps repeat: one receive time per burst, device clocks shared within a millisecond
        self._longs: dict[int, bytes] = {}

    def _prefix(self, tenant_id: str, device_id: str) -> bytes:
        p = self._header + _string(tenant_id) + _string(device_id)
        if len(self._prefixes) >= _MAX_CACHE:
            self._prefixes.clear()
        self._prefixes[(tenant_id, device_id)] = p
        return p

    def _long(self, n: int) -> bytes:
        if len(self._longs) >= 4096:
            self._longs.clear()
        b = self._longs[n] = _long(n)
        return b

    def _key(self, name: str) -> bytes:
        k = _string(name)
        if len(self._keys) < 10_000:  # metric names are few; a device inventing names must not grow this
            self._keys[name] = k
        return k

    def encode(self, tenant_id: str, device_id: str, event_time: int, receive_time: int,
               values: dict) -> bytes:
        prefix = self._prefixes.get((tenant_id, device_id)) or self._prefix(tenant_id, device_id)
        longs = self._longs
        et = longs.get(event_time) or self._long(event_time)
        rt = longs.get(receive_time) or self._long(receive_time)
        parts = [prefix, et, rt, self._protocol_bytes]
        if values:
            parts.append(_long(len(values)))
            keys = self._keys
            for name, v in values.items():
                t = type(v)
                if t is float:
                    parts.append(keys.get(name) or self._key(name))
                    parts.append(_DOUBLE + _double(v))
                elif t is bool:
                    parts.append(keys.get(name) or self._key(name))
                    parts.append(_TRUE if v else _FALSE)
                elif t is str:
                    parts.append(keys.get(name) or self._key(name))
                    parts.append(_STRING + _string(v))
                else:  # ints and anything unusual: let fastavro decide how the union takes it
                    return self._fallback(tenant_id, device_id, event_time, receive_time, values)
        parts.append(_END)
        return b"".join(parts)

    def _fallback(self, tenant_id: str, device_id: str, event_time: int, receive_time: int, values: dict) -> bytes:
        return self._codec.encode({"tenant_id": tenant_id, "device_id": device_id, "event_time": event_time,
                                   "receive_time": receive_time, "protocol": self._protocol, "values": values,
                                   "device_type": None, "tags": []})
