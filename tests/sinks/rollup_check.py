"""Rollups against raw, exhaustively: for both grains, every (device, metric, bucket) and every aggregate
the API offers, the rollup tables and the store's downsampled reads must equal the same aggregate computed
over ``telemetry FINAL`` (the deduplicated raw rows). Values in the tests are multiples of 1/4, so sums are
exact whatever the order of addition and equality can be exact too."""

from __future__ import annotations

import datetime as dt

from sinks.clickhouse.store import AGGS, TelemetryStore, align

GRAINS = {60: "telemetry_1m", 3600: "telemetry_1h"}
Key = tuple[str, str, int]  # device, metric, bucket start (epoch s)


def raw_truth(ch, tenant: str, grain: int) -> dict[Key, tuple]:
    rows = ch.query_rows(
        f"""SELECT device_id, metric, toUnixTimestamp(toStartOfInterval(ts, INTERVAL {grain} SECOND)) AS b,
                   avg(value_num), min(value_num), max(value_num), sum(value_num), count(value_num),
                   argMax(value_num, ts)
            FROM {ch.database}.telemetry FINAL WHERE tenant_id = {{t:String}} AND value_num IS NOT NULL
            GROUP BY device_id, metric, b""", {"t": tenant})
    return {(d, m, int(b)): tuple(v) for d, m, b, *v in rows}


def rollup_table(ch, tenant: str, grain: int) -> dict[Key, tuple]:
    rows = ch.query_rows(
        f"""SELECT device_id, metric, toUnixTimestamp(bucket), sum_v / count_v, min_v, max_v, sum_v, count_v, last_v
            FROM {ch.database}.{GRAINS[grain]} FINAL WHERE tenant_id = {{t:String}} AND count_v > 0""", {"t": tenant})
    return {(d, m, int(b)): tuple(v) for d, m, b, *v in rows}


def api_answers(ch, tenant: str, devices: list[str], metrics: list[str], grain: int) -> dict[Key, tuple]:
    """What ``GET …/telemetry?interval=&agg=`` and ``/v1/telemetry/series`` answer (both call this)."""
    store = TelemetryStore(ch)
    lo, hi = ch.query_rows(f"SELECT min(ts), max(ts) FROM {ch.database}.telemetry WHERE tenant_id = {{t:String}}",
                           {"t": tenant})[0]
    start, end = align(lo.replace(tzinfo=dt.UTC), hi.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=1), grain)
    by_agg = {}
    for metric in metrics:
        for agg in AGGS:
            series = store.downsampled(tenant_id=tenant, device_ids=devices, metric=metric, start=start, end=end,
                                       interval_s=grain, agg=agg)
            assert all(s.source == GRAINS[grain] for s in series.values())
            for device, s in series.items():
                for p in s.points:
                    by_agg.setdefault((device, metric, int(p.ts.timestamp())), {})[agg] = p.value
    return {k: tuple(v.get(a) for a in AGGS) for k, v in by_agg.items()}


def assert_rollups_equal_raw(ch, tenant: str, devices: list[str], metrics: list[str], *, tables: bool = True) -> int:
    """Every bucket and aggregate; ``tables``: the rollup tables too (only once a refresh ran). Returns the
    number of buckets compared."""
    compared = 0
    for grain in GRAINS:
        truth = raw_truth(ch, tenant, grain)
        assert truth, "no raw data to compare"
        diff = _diff(api_answers(ch, tenant, devices, metrics, grain), truth)
        assert not diff, f"API answers, grain {grain}s (key, got, want): {diff}"
        if tables:
            diff = _diff(rollup_table(ch, tenant, grain), truth)
            assert not diff, f"{GRAINS[grain]} rows (key, got, want): {diff}"
        compared += len(truth)
    return compared


def _diff(got: dict[Key, tuple], want: dict[Key, tuple]) -> list:
    """The first few differences, (key, got, want) with the aggregates named."""
    out = []
    for key in sorted(set(got) | set(want)):
        g, w = got.get(key), want.get(key)
        if g is None or w is None or [_norm(x) for x in g] != [_norm(x) for x in w]:
            out.append((key, g and dict(zip(AGGS, g, strict=True)), w and dict(zip(AGGS, w, strict=True))))
            if len(out) == 5:
                break
    return out


def _norm(v):
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
