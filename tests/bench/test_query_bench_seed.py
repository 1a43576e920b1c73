"""`fleetstream bench --queries` measures reads of the data it claims to have written: the seed lands in the
embedded ClickHouse as the sink would write it (raw rows, latest values, rollups marked done), and the
scenarios ask for pages that exist. chdb only, no stack."""

from __future__ import annotations

import datetime as dt
import time

from fleetstream.bench import queries
from runtime.settings import Settings
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.store import TelemetryStore


def test_the_seed_is_what_the_scenarios_read(tmp_path):
    s = Settings(data_dir=tmp_path)
    end_ms = (int(time.time()) - 60) * 1000
    devices = ["m-0", "m-1"]
    rows = queries.seed(s, "tenant-q", devices, 1500, end_ms)
    assert rows == 2 * (1500 + len(queries.OTHER_METRICS))
    ch = ClickHouse(s.chdb_dsn)
    try:
        store = TelemetryStore(ch)
        start = dt.datetime.fromtimestamp((end_ms - 1500 * 1000) / 1000, dt.UTC)
        end = dt.datetime.fromtimestamp(end_ms / 1000, dt.UTC)
        page = store.raw_points(tenant_id="tenant-q", device_id="m-1", metric=queries.METRIC, start=start, end=end,
                                limit=1000)
        assert len(page) == 1000 and page[0].ts == start
        latest = {x.metric: x.value for x in store.latest(tenant_id="tenant-q", device_ids=["m-0"])}
        assert latest == {queries.METRIC: 20.0 + (1499 % 600) / 10, "humidity": 55.0, "state": "on", "door_open": True}
        a, b = queries.align_minutes(start, end)
        series = store.downsampled(tenant_id="tenant-q", device_ids=devices, metric=queries.METRIC, start=a, end=b,
                                   interval_s=60, agg="count")
        assert series["m-0"].source == "telemetry_1m"
        assert sum(p.value for p in series["m-0"].points) == 1500  # every seeded point, once
        assert store.latest(tenant_id="other", device_ids=devices) == []
    finally:
        ch.close()
    cfg = queries.QueryBenchConfig(devices=2, points=1500)
    for sc in queries.scenarios(cfg, devices, end_ms):
        assert sc.paths and all(p.startswith("/v1/devices/m-") for p in sc.paths)
