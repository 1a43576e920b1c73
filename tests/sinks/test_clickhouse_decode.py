"""The telemetry sink's two write paths store the same rows (adr/0065): ClickHouse decoding a batch of raw
Kafka values as one Avro file (the chdb path) and fastavro decoding each record in Python (the server
path and the fallback). Needs chdb only, no Kafka."""

from __future__ import annotations

import math
import time

import pytest

from schemas import codec
from sinks.clickhouse import avro_batch, rollups
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.rows import COLUMNS
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseTelemetrySink

NOW = int(time.time() * 1000) // 1000 * 1000  # whole seconds: stays inside every TTL


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory):
    return tmp_path_factory.mktemp("ch-decode")


def _client(path, database: str) -> ClickHouse:
    ch = ClickHouse(f"chdb://{path}", database=database)
    create_all(ch, database)
    return ch


def _records() -> list[dict]:
    """Edge cases of the telemetry schema: every union branch, odd floats and strings, empty and large
    maps, multi-byte varints (long strings, >63 map entries, big offsets), two tenants."""
    big_map = {f"m{i:03d}": float(i) for i in range(70)}
    return [
        {"tenant_id": "tenant-a", "device_id": "d-1", "event_time": NOW, "receive_time": NOW + 7,
         "protocol": "mqtt", "values": {"t": 21.5, "on": True, "off": False, "mode": "eco"},
         "device_type": None, "tags": []},
        {"tenant_id": "tenant-b", "device_id": "d-1", "event_time": NOW + 1, "receive_time": NOW + 1,
         "protocol": "http", "values": {"zero": 0.0, "neg": -1e-300, "huge": 1.7976931348623157e308,
                                        "inf": math.inf, "ninf": -math.inf, "nan": math.nan, "negzero": -0.0},
         "device_type": "boiler", "tags": ["x", "y"]},
        {"tenant_id": "tenant-a", "device_id": "дом-🌡", "event_time": NOW + 2, "receive_time": NOW + 2,
         "protocol": "coap", "values": {"note": "", "quote": "it's \"q\"\n\t\\", "long": "é" * 300,
                                        "ünï": 3.0},
         "device_type": "x" * 200, "tags": ["t"] * 100},
        {"tenant_id": "tenant-b", "device_id": "d-empty", "event_time": NOW + 3, "receive_time": NOW + 3,
         "protocol": "modbus", "values": {}, "device_type": None, "tags": []},
        {"tenant_id": "tenant-a", "device_id": "d-big", "event_time": NOW + 4, "receive_time": NOW + 4,
         "protocol": "opcua", "values": big_map, "device_type": None, "tags": []},
    ]


def _items(records: list[dict], partition: int = 3, first_offset: int = 2**33) -> list[tuple[bytes, int, int]]:
    return [(codec("telemetry").encode(r), partition, first_offset + i) for i, r in enumerate(records)]


def _rows(ch: ClickHouse) -> list[tuple]:
    cols = ", ".join(c if c not in ("ts", "received_at") else f"toUnixTimestamp64Milli({c})" for c in COLUMNS)
    rows = ch.query_rows(f"SELECT {cols} FROM {ch.database}.telemetry ORDER BY kafka_offset, metric")
    # NaN never equals itself: compare its repr
    return [tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in rows]


def _rollup_counts(ch: ClickHouse) -> tuple[int, int, int]:
    """Numeric points under FINAL and as the minute and hour rollups count them, once refreshed."""
    rollups.refresh(ch, ch.database, [0, 1, 3])
    db = ch.database
    return (ch.query_rows(f"SELECT count() FROM {db}.telemetry FINAL WHERE value_num IS NOT NULL")[0][0],
            ch.query_rows(f"SELECT sum(count_v) FROM {db}.telemetry_1m FINAL")[0][0],
            ch.query_rows(f"SELECT sum(count_v) FROM {db}.telemetry_1h FINAL")[0][0])


def test_clickhouse_decoding_stores_what_fastavro_decoding_stores(chdb_path):
    fast, slow = _client(chdb_path, "decode_fast"), _client(chdb_path, "decode_slow")
    for ch in (fast, slow):  # a tenant with its own retention, stamped on its rows by both paths
        ch.insert("tenant_retention", [["tenant-b", 30, NOW]], ["tenant_id", "retention_days", "updated_at"])
    items = _items(_records())

    fast_sink = ClickHouseTelemetrySink(fast, decode_in_clickhouse=True)
    assert fast_sink.write_raw(items) == 0
    assert fast_sink.fallbacks == 0  # the ClickHouse path did it
    slow_sink = ClickHouseTelemetrySink(slow, decode_in_clickhouse=False)
    decoded = [codec("telemetry").decode(v) | {"kafka_partition": p, "kafka_offset": o} for v, p, o in items]
    slow_sink.write(decoded)

    got, want = _rows(fast), _rows(slow)
    assert len(want) == sum(len(r["values"]) for r in _records())
    assert got == want
    # each record's rows are under its own tenant, with that tenant's retention
    by_offset = {o: r for (_v, _p, o), r in zip(items, _records(), strict=True)}
    for row in got:
        rec = by_offset[row[COLUMNS.index("kafka_offset")]]
        assert row[0] == rec["tenant_id"] and row[1] == rec["device_id"]
        assert row[COLUMNS.index("retention_days")] == (30 if rec["tenant_id"] == "tenant-b" else 365)
    assert _rollup_counts(fast) == _rollup_counts(slow)


def test_a_corrupt_record_falls_back_to_fastavro_and_every_good_record_lands_once(chdb_path):
    ch = _client(chdb_path, "decode_corrupt")
    records = _records()[:3]
    items = _items(records, partition=0, first_offset=10)
    value, p, o = items[1]
    items[1] = (value[:-5], p, o)  # truncated body, right header: only a decoder notices
    items.append((codec("device_event").encode({"tenant_id": "t", "device_id": "d", "time": NOW, "event_type": "ONLINE",
                                                "source": "mqtt", "reason": None, "details": {}}), 0, 13))
    sink = ClickHouseTelemetrySink(ch, decode_in_clickhouse=True)

    assert sink.write_raw(items) == 2  # the truncated record and the foreign one
    assert sink.fallbacks == 1
    rows = _rows(ch)
    assert {r[COLUMNS.index("kafka_offset")] for r in rows} == {10, 12}
    assert len(rows) == len(records[0]["values"]) + len(records[2]["values"])
    raw, per_minute, per_hour = _rollup_counts(ch)
    assert raw == per_minute == per_hour


def test_fallback_writes_again_what_an_interrupted_insert_already_wrote_and_it_counts_once(chdb_path):
    ch = _client(chdb_path, "decode_partial")
    sink = ClickHouseTelemetrySink(ch, decode_in_clickhouse=True)
    items = _items(_records()[:3], partition=1, first_offset=100)
    sink.write(  # as if an earlier attempt had landed the first record before failing
        [codec("telemetry").decode(items[0][0]) | {"kafka_partition": 1, "kafka_offset": 100}])
    value, p, o = items[2]
    items[2] = (value[:12], p, o)

    assert sink.write_raw(items) == 1
    offsets = [r[COLUMNS.index("kafka_offset")] for r in _rows(ch)]
    assert sorted(set(offsets)) == [100, 101]
    assert offsets.count(100) == 2 * len(_records()[0]["values"])  # written twice, one point under FINAL
    raw, per_minute, per_hour = _rollup_counts(ch)
    numbers = sum(isinstance(v, float) for r in _records()[:2] for v in r["values"].values())
    assert raw == per_minute == per_hour == numbers  # record 100's numbers counted once


def test_container_and_wire_readers():
    data, n = avro_batch.container(_items(_records()[:2]))
    assert n == 2 and data.startswith(b"Obj\x01") and data.endswith(b"fleetstream-sync")
    rec = _records()[0]
    assert avro_batch.receive_time(codec("telemetry").encode(rec)) == rec["receive_time"]
    assert avro_batch.receive_time(codec("telemetry").header) is None
    with pytest.raises(ValueError):
        avro_batch.insert_sql("fleetstream", "/tmp/x'; DROP TABLE t")
