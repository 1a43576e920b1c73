"""Latest values from memory (adr/0185): the telemetry sink tells the cache which devices each insert touched,
the store answers from the cache or reads ClickHouse and keeps what it read unless an insert raced it.
Real chdb, both of the sink's write paths; no Kafka. Checks correctness, never timing."""

from __future__ import annotations

import threading
import time

import pytest

from schemas import codec
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.latest import LatestCache
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseTelemetrySink
from sinks.clickhouse.store import TelemetryStore

NOW = int(time.time() * 1000) // 1000 * 1000


def _rec(tenant: str, device: str, ts: int, **values) -> dict:
    return {"tenant_id": tenant, "device_id": device, "event_time": ts, "receive_time": ts + 1, "protocol": "mqtt",
            "values": values, "device_type": None, "tags": []}


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    client = ClickHouse(f"chdb://{tmp_path_factory.mktemp('ch-latest')}", database="latest_cache")
    create_all(client, "latest_cache")
    yield client
    client.close()


@pytest.fixture()
def parts(ch):
    cache = LatestCache()
    return cache, ClickHouseTelemetrySink(ch, on_written=cache.written), TelemetryStore(ch, latest_cache=cache)


def _values(store: TelemetryStore, tenant: str, device: str) -> dict:
    return {x.metric: x.value for x in store.latest(tenant_id=tenant, device_ids=[device])}


def test_a_new_reading_replaces_the_cached_value_on_both_write_paths(parts):
    cache, sink, store = parts
    sink.write([_rec("t-a", "d-1", NOW, temperature=20.0, mode="eco")])
    assert _values(store, "t-a", "d-1") == {"temperature": 20.0, "mode": "eco"}
    assert cache.get(("t-a", "d-1")) is not None  # kept: the next read needs no query
    sink.write([_rec("t-a", "d-1", NOW + 1000, temperature=21.0)])  # decoded in Python (server path)
    assert cache.get(("t-a", "d-1")) is None
    assert _values(store, "t-a", "d-1") == {"temperature": 21.0, "mode": "eco"}
    sink.write_raw([(codec("telemetry").encode(_rec("t-a", "d-1", NOW + 2000, temperature=22.0)), 0, 10)])  # decoded by chdb
    assert _values(store, "t-a", "d-1") == {"temperature": 22.0, "mode": "eco"}
    # an older reading arriving late does not become the latest one
    sink.write_raw([(codec("telemetry").encode(_rec("t-a", "d-1", NOW - 5000, temperature=-1.0)), 0, 11)])
    assert _values(store, "t-a", "d-1")["temperature"] == 22.0


def test_a_device_without_readings_is_cached_empty_until_its_first_one(parts):
    cache, sink, store = parts
    assert _values(store, "t-a", "d-silent") == {}
    assert cache.get(("t-a", "d-silent")) == ()
    sink.write_raw([(codec("telemetry").encode(_rec("t-a", "d-silent", NOW, temperature=5.0)), 0, 20)])
    assert _values(store, "t-a", "d-silent") == {"temperature": 5.0}


def test_tenants_never_see_each_others_entries(parts):
    """The same device id under two tenants: each tenant's read, cached or not, has its own values only."""
    cache, sink, store = parts
    sink.write([_rec("t-a", "shared-id", NOW, temperature=1.0), _rec("t-b", "shared-id", NOW, humidity=2.0)])
    for _ in range(2):  # first from ClickHouse, then from the cache
        assert _values(store, "t-a", "shared-id") == {"temperature": 1.0}
        assert _values(store, "t-b", "shared-id") == {"humidity": 2.0}
        assert _values(store, "t-c", "shared-id") == {}
    assert cache.get(("t-c", "shared-id")) == ()
    with pytest.raises(ValueError):
        store.latest(tenant_id="", device_ids=["shared-id"])


def test_many_devices_and_a_metric_filter_answer_like_clickhouse(parts, ch):
    cache, sink, store = parts
    sink.write([_rec("t-m", f"d-{i}", NOW + i, temperature=float(i), humidity=float(-i)) for i in range(5)])
    store.latest(tenant_id="t-m", device_ids=["d-1", "d-3"])  # two of them cached
    uncached = TelemetryStore(ch)
    for metrics in (None, ["humidity"], ["nope"]):
        kw = {"tenant_id": "t-m", "device_ids": ["d-4", "d-1", "d-0", "d-3", "d-1"], "metrics": metrics}
        assert store.latest(**kw) == uncached.latest(**kw)


def test_a_read_that_raced_an_insert_is_answered_but_not_kept():
    cache = LatestCache()
    since = cache.round()
    cache.written({("t", "d")})  # an insert returned while the read was under way
    assert cache.offer(("t", "d"), ("stale",), since) is False
    assert cache.get(("t", "d")) is None
    cache.written({("t", "other")})
    assert cache.offer(("t", "d"), ("fresh",), cache.round() - 1) is True  # only another device was written
    assert cache.get(("t", "d")) == ("fresh",)


def test_a_read_older_than_the_remembered_rounds_is_not_kept():
    cache = LatestCache(history=2)
    since = cache.round()
    for i in range(3):
        cache.written({("t", f"x{i}")})
    assert cache.offer(("t", "d"), ("v",), since) is False


def test_least_recently_used_devices_leave_first():
    cache = LatestCache(max_devices=2)
    for d in ("a", "b"):
        cache.offer(("t", d), (d,), cache.round())
    cache.get(("t", "a"))
    cache.offer(("t", "c"), ("c",), cache.round())
    assert cache.get(("t", "b")) is None and cache.get(("t", "a")) == ("a",) and len(cache) == 2


def test_concurrent_reads_and_writes_end_on_the_newest_value(parts):
    """Readers hammer one device while the sink writes newer readings: once writing stops, every read (from
    the cache or not) has the last one."""
    cache, sink, store = parts
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader():
        while not stop.is_set():
            try:
                store.latest(tenant_id="t-r", device_ids=["d-r"])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            sink.write_raw([(codec("telemetry").encode(_rec("t-r", "d-r", NOW + i * 1000, n=float(i))), 1, 100 + i)])
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors
    assert _values(store, "t-r", "d-r") == {"n": 29.0}
    assert cache.get(("t-r", "d-r")) is not None
