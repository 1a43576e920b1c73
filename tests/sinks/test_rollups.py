"""Rollups equal an aggregate of the deduplicated raw rows (adr/0114), on real chdb through the telemetry
sink's own write path: a reading re-sent three times (an MQTT redelivery after a connector crash becomes a
new Kafka record with a new offset) is one point in raw and one in every minute and hour rollup, for every
aggregate; so is a corrected value or a number replaced by a string at the same timestamp. The store's
reads are exact before the rollups are refreshed (pending minutes come from raw) and after."""

from __future__ import annotations

import time

import pytest

from schemas import codec
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.rollups import progress
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseTelemetrySink
from tests.sinks.rollup_check import assert_rollups_equal_raw, raw_truth, rollup_table

TOPIC = "fleetstream.telemetry"
DEVICES, METRICS = ["d-0", "d-1", "d-2"], ["temp", "power"]
HOUR_MS = 3_600_000


@pytest.fixture
def ch(tmp_path_factory):
    client = ClickHouse(f"chdb://{tmp_path_factory.mktemp('ch-rollups')}")
    create_all(client)
    yield client
    client.close()


class Feed:
    """Telemetry records as the sink receives them: Kafka partition by device, offsets counting up."""

    def __init__(self, sink: ClickHouseTelemetrySink, tenant: str):
        self.sink, self.tenant, self.next = sink, tenant, {0: 0, 1: 0}

    def send(self, readings: list[tuple[str, int, dict, int]]) -> None:
        """(device, event time, values, receive time) → one batch."""
        items = []
        for device, ts, values, rx in readings:
            part = int(device[-1]) % 2
            items.append((codec("telemetry").encode({"tenant_id": self.tenant, "device_id": device, "event_time": ts,
                                      "receive_time": rx, "protocol": "mqtt", "values": values}),
                          part, self.next[part]))
            self.next[part] += 1
        assert self.sink.write_raw(items) == 0

    def refresh(self) -> None:
        self.sink.maintain([(TOPIC, 0), (TOPIC, 1)], idle=True)


def _history(t0: int) -> list[tuple[str, int, dict, int]]:
    """Two hours and ten minutes of readings every 20 s per device: numbers and a string metric."""
    out = []
    for i in range(0, 130 * 3):
        ts = t0 + i * 20_000
        for n, device in enumerate(DEVICES):
            out.append((device, ts, {"temp": (i % 40 + n) * 0.25, "power": float(i % 7), "state": "ok"}, ts + 50))
    return out


def test_a_reading_resent_three_times_counts_once_in_every_rollup(ch):
    tenant = "tenant-dup"
    sink = ClickHouseTelemetrySink(ch)
    sink.on_assigned({(TOPIC, 0): 0, (TOPIC, 1): 0})
    feed = Feed(sink, tenant)
    t0 = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS
    history = _history(t0)
    for i in range(0, len(history), 200):
        feed.send(history[i:i + 200])
    resent = ("d-1", t0 + 3_600_000 + 40_000, {"temp": 9.75, "power": 2.0, "state": "ok"})
    original = next(r for r in history if r[:2] == resent[:2])
    # the same reading again, three times, as redeliveries do: new offsets, later receive times, and one
    # of them in the same batch as other readings
    for k in range(3):
        feed.send([(*resent[:2], original[2], original[3] + 1000 * (k + 1))]
                  + ([history[5]] if k == 1 else []))

    minute = (resent[1] // 60_000) * 60
    truth = raw_truth(ch, tenant, 60)
    assert truth[("d-1", "temp", minute)][4] == 3  # three readings in that minute, each once
    # before any refresh, every minute is pending and read from raw; then the rollup tables answer
    assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS, tables=False)
    feed.refresh()
    assert set(progress(ch, ch.database)) == {0, 1}
    assert rollup_table(ch, tenant, 60)[("d-1", "temp", minute)][4] == 3
    assert rollup_table(ch, tenant, 3600)[("d-1", "temp", (minute // 3600) * 3600)][4] == 180
    buckets = assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS)
    assert buckets == len(DEVICES) * len(METRICS) * (130 + 3)  # every minute and hour of every series

    # after the refresh: a fourth copy, a corrected value and a number replaced by a string, each at a
    # timestamp already rolled up; reads are exact while pending and after the next refresh
    corrected = history[30]
    replaced = history[61]
    feed.send([(*resent[:2], original[2], original[3] + 9000),
               (corrected[0], corrected[1], {"temp": 100.25}, corrected[3] + 5000),
               (replaced[0], replaced[1], {"power": "overload"}, replaced[3] + 5000)])
    assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS, tables=False)
    feed.refresh()
    assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS)
    m = (corrected[1] // 60_000) * 60
    assert rollup_table(ch, tenant, 60)[(corrected[0], "temp", m)][2] == 100.25  # max follows the correction
    m = (replaced[1] // 60_000) * 60
    assert rollup_table(ch, tenant, 60)[(replaced[0], "power", m)][4] == 2  # was 3: one became a string


def test_a_refresh_cut_short_is_done_again_and_progress_follows_the_committed_offsets(ch):
    tenant = "tenant-progress"
    sink = ClickHouseTelemetrySink(ch)
    sink.on_assigned({(TOPIC, 0): 0, (TOPIC, 1): 0})
    feed = Feed(sink, tenant)
    t0 = (int(time.time() * 1000) // HOUR_MS - 2) * HOUR_MS
    feed.send(_history(t0)[:300])
    feed.refresh()
    done = progress(ch, ch.database)
    assert done == feed.next  # every written offset is rolled up

    # rollup rows go missing (as if derived data fell behind what progress claims): moving progress back,
    # as a sink does when the group's commit is behind it (a reset group, a recreated topic), makes reads
    # take those partitions from raw at once, and the next refresh rebuilds the rows
    ch.command(f"ALTER TABLE {ch.database}.telemetry_1m DELETE WHERE tenant_id = 'tenant-progress' "
               "AND device_id = 'd-0' SETTINGS mutations_sync = 1")
    assert not any(k[0] == "d-0" for k in rollup_table(ch, tenant, 60))
    sink.on_assigned({(TOPIC, 0): 0})
    assert progress(ch, ch.database) == {0: 0, 1: done[1]}
    assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS, tables=False)
    feed.refresh()
    assert progress(ch, ch.database) == done
    assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS)


# The insert-time rollups of adr/0060, as a data directory from before adr/0114 has them.
_OLD_ROLLUP = """
CREATE TABLE {db}.telemetry_{grain} (
    tenant_id LowCardinality(String), device_id String, metric LowCardinality(String), bucket DateTime('UTC'),
    sum_v AggregateFunction(sum, Float64), count_v AggregateFunction(count, Float64),
    min_v SimpleAggregateFunction(min, Float64), max_v SimpleAggregateFunction(max, Float64),
    last_v AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')), retention_days SimpleAggregateFunction(max, UInt16)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(bucket) ORDER BY (tenant_id, device_id, metric, bucket)"""
_OLD_MV = """
CREATE MATERIALIZED VIEW {db}.telemetry_{grain}_mv TO {db}.telemetry_{grain} AS
SELECT tenant_id, device_id, metric, {fn}(ts) AS bucket, sumState(v) AS sum_v, countState(v) AS count_v,
       min(v) AS min_v, max(v) AS max_v, argMaxState(v, ts) AS last_v, max(retention_days) AS retention_days
FROM (SELECT *, assumeNotNull(value_num) AS v FROM {db}.telemetry WHERE value_num IS NOT NULL)
GROUP BY tenant_id, device_id, metric, bucket"""


def test_a_data_directory_with_insert_time_rollups_is_rebuilt_from_raw(tmp_path):
    from sinks.clickhouse.schema import TELEMETRY

    db, tenant = "upgrade", "tenant-upgrade"
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}", database=db)
    try:
        ch.command(f"CREATE DATABASE {db}")
        ch.command(TELEMETRY.format(db=db))
        for grain, fn in (("1m", "toStartOfMinute"), ("1h", "toStartOfHour")):
            ch.command(_OLD_ROLLUP.format(db=db, grain=grain))
            ch.command(_OLD_MV.format(db=db, grain=grain, fn=fn))
        t0 = (int(time.time() * 1000) // HOUR_MS - 2) * HOUR_MS
        history = _history(t0)[:600]
        sink = ClickHouseTelemetrySink(ch)
        feed = Feed(sink, tenant)
        feed.send(history)
        feed.send(history[:50])  # counted twice by the old views
        old = ch.query_rows(f"SELECT countMerge(count_v) FROM {db}.telemetry_1m")[0][0]
        assert old == (600 + 50) * 2

        create_all(ch, db)
        tables = {name: engine for name, engine in ch.query_rows(
            "SELECT name, engine FROM system.tables WHERE database = {db:String}", {"db": db})}
        assert tables["telemetry_1m"] == tables["telemetry_1h"] == "ReplacingMergeTree"
        assert tables["telemetry_1m_insert_time"] == "AggregatingMergeTree"  # kept, no longer fed
        assert "telemetry_1m_mv" not in tables and "telemetry_1h_mv" not in tables
        assert progress(ch, db) == feed.next  # the rebuilt rollups cover everything raw held
        assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS)

        sink.on_assigned({(TOPIC, 0): feed.next[0], (TOPIC, 1): feed.next[1]})
        feed.send(_history(t0)[600:900] + history[:10])
        assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS, tables=False)
        feed.refresh()
        assert_rollups_equal_raw(ch, tenant, DEVICES, METRICS)
        assert ch.query_rows(f"SELECT countMerge(count_v) FROM {db}.telemetry_1m_insert_time")[0][0] == old
    finally:
        ch.close()


def test_under_load_refreshes_space_out_while_they_are_slow_and_idle_refreshes_at_once(ch):
    sink = ClickHouseTelemetrySink(ch, rollup_every_s=10)
    feed = Feed(sink, "tenant-interval")
    sink.on_assigned({(TOPIC, 0): 0, (TOPIC, 1): 0})
    assert sink.rollup_interval() == 10
    for took, interval in ((0.5, 10), (3.0, 30), (60.0, 120)):  # a refresh may take a tenth of the thread
        sink._last_refresh_s = took
        assert sink.rollup_interval() == pytest.approx(interval)
    t0 = (int(time.time()) // 60 - 5) * 60_000
    feed.send([("d-0", t0, {"temp": 1.0}, t0)])
    sink._rolled_at = time.monotonic()  # refreshed a moment ago, and that refresh was slow
    sink._last_refresh_s = 3.0
    sink.maintain([(TOPIC, 0), (TOPIC, 1)], idle=False)
    assert sink.rollups_pending, "not due under load yet"
    sink.maintain([(TOPIC, 0), (TOPIC, 1)], idle=True)
    assert not sink.rollups_pending, "an idle sink refreshes at once"
    assert sink._last_refresh_s < 3.0
