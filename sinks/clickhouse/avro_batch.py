"""Telemetry batches decoded by ClickHouse instead of Python (adr/0065).

A Kafka value is a header naming the schema, then the Avro body (``schemas.wire``). The body of every
record written with the repo's telemetry schema is already a valid Avro datum of it, so a batch becomes an Avro object container
file by concatenation: one header naming the schema, one block holding the bodies, one sync marker.
ClickHouse's Avro reader (C++) then does what fastavro did per record in Python, and an ``INSERT … SELECT …
ARRAY JOIN`` turns each record's ``values`` map into one row per metric, the same rows
``rows.telemetry_rows`` builds.

The Kafka coordinates ride inside each datum: Avro records are the plain concatenation of their fields, so
appending two zig-zag longs to a body makes it a datum of the telemetry schema extended by
``kafka_partition`` and ``kafka_offset`` (the schema in the file header says so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from schemas import wire
from schemas.codec import load_schema


def _schema() -> dict:
    s = load_schema("telemetry")
    for f in s["fields"]:  # ClickHouse would read timestamp-millis as DateTime64; we convert explicitly
        if isinstance(f["type"], dict):
            f["type"] = {k: v for k, v in f["type"].items() if k != "logicalType"}
    s["fields"] = [*s["fields"], {"name": "kafka_partition", "type": "long"}, {"name": "kafka_offset", "type": "long"}]
    return s


# Any 16 bytes serve as the sync marker; a fixed one keeps files reproducible.
_SYNC = b"fleetstream-sync"
FILE_HEADER = wire.container_header(_schema(), _SYNC)


def container(items: Iterable[tuple[bytes, int, int]]) -> tuple[bytes, int]:
    """(value, partition, offset) of telemetry records written with the repo's schema (header already checked)
    → (Avro file, record count)."""
    parts: list[bytes] = []
    n = 0
    part_cache: dict[int, bytes] = {}
    start, encode_long = wire.HEADER_LEN, wire.encode_long
    for value, partition, offset in items:
        p = part_cache.get(partition)
        if p is None:
            p = part_cache[partition] = encode_long(partition)
        parts.append(value[start:])
        parts.append(p)
        parts.append(encode_long(offset))
        n += 1
    return wire.container_file(FILE_HEADER, n, b"".join(parts), _SYNC), n


# One row per metric value, the columns of rows.COLUMNS. The union [double, boolean, string] arrives as
# Variant(Bool, Float64, String); retention comes from two parallel arrays (tenants, days).
INSERT_SQL = """
INSERT INTO {db}.telemetry (tenant_id, device_id, metric, ts, received_at, value_num, value_bool, value_str,
                            protocol, retention_days, kafka_partition, kafka_offset)
SELECT tenant_id, device_id, kv.1,
       fromUnixTimestamp64Milli(event_time, 'UTC'), fromUnixTimestamp64Milli(receive_time, 'UTC'),
       variantElement(kv.2, 'Float64'), toUInt8(variantElement(kv.2, 'Bool')), variantElement(kv.2, 'String'),
       protocol, transform(tenant_id, {{rt:Array(String)}}, {{rd:Array(UInt16)}}, toUInt16({{default_days:UInt16}})),
       toUInt16(kafka_partition), toUInt64(kafka_offset)
FROM file('{path}', 'Avro')
ARRAY JOIN CAST(`values`, 'Array(Tuple(String, Variant(Bool, Float64, String)))') AS kv
"""


def insert_sql(db: str, path: str) -> str:
    # the path is ours (mkstemp), but it is formatted into SQL: refuse anything but plain path characters
    if not re.fullmatch(r"[A-Za-z0-9/_.-]+", path):
        raise ValueError(f"unexpected spool path {path!r}")
    return INSERT_SQL.format(db=db, path=path)


def spool_dir() -> str | None:
    """Where batch files go: memory-backed /dev/shm when there is one (the file lives for one insert)."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def receive_time(value: bytes) -> int | None:
    """A telemetry record's ``receive_time`` read off the wire (the field after tenant, device and event
    time); None when the value is not that shape."""
    return wire.peek_long(value, strings=2, index=1)
