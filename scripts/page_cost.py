"""What a 1,000-point page costs and where, in one process on the query bench's data (adr/0193; a script, not
a test: nothing here asserts a number). Prints process CPU ms per page (all threads, chdb's included: the
figure that carries across a busy machine) for:

- the store's page paths (``raw_points`` + orjson as the route wrote it before, ``raw_page`` + orjson now);
- the bare chdb query and its parts (``SELECT 1``, a ``count()`` over the key range, ``LIMIT 10``, no FINAL);
- per-query settings, and the raw table re-written with ``index_granularity = 1024`` / merged to one part;
- concurrent readers (1, 2, 4, 8 threads, one reader client each): pages/s and CPU per page.

Usage: .venv/bin/python scripts/page_cost.py [--pages 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from fleetstream.bench.queries import METRIC, seed  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from sinks.clickhouse.client import ClickHouse  # noqa: E402
from sinks.clickhouse.store import TelemetryStore  # noqa: E402

DEVICES = [f"m-{i}" for i in range(20)]
POINTS = 20_000
TENANT = "tenant-q"


def cpu_ms(fn, n: int) -> float:
    for _ in range(10):
        fn()
    c0 = time.process_time()
    for _ in range(n):
        fn()
    return round(1000 * (time.process_time() - c0) / n, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=200)
    n = ap.parse_args().pages
    with tempfile.TemporaryDirectory(prefix="page-cost-") as tmp:
        s = Settings(data_dir=Path(tmp))
        end_ms = (int(time.time()) - 60) * 1000
        seed(s, TENANT, DEVICES, POINTS, end_ms)
        ch = ClickHouse(s.chdb_dsn, readers=8)
        try:
            run(ch, end_ms, n)
        finally:
            ch.close()


def run(ch: ClickHouse, end_ms: int, n: int) -> None:
    store, db = TelemetryStore(ch), ch.database
    start_ms, end = end_ms - POINTS * 1000, dt.datetime.fromtimestamp(end_ms / 1000 + 300, dt.UTC)
    rnd = random.Random(1)

    def pick() -> tuple[str, int]:
        return rnd.choice(DEVICES), rnd.randrange(start_ms, end_ms - 1_060_000, 1000)

    def page_args() -> dict:
        d, s0 = pick()
        return {"tenant_id": TENANT, "device_id": d, "metric": METRIC, "limit": 1000, "end": end,
                "start": dt.datetime.fromtimestamp(s0 / 1000, dt.UTC)}

    out: dict[str, float] = {}
    out["raw_points + dicts + orjson (before)"] = cpu_ms(lambda: orjson.dumps(
        [{"ts": t, "value": v} for t, v in store.raw_points(**page_args())], option=orjson.OPT_UTC_Z), n)
    out["raw_page + orjson (adr/0193)"] = cpu_ms(lambda: orjson.dumps(store.raw_page(**page_args()),
                                                                       option=orjson.OPT_UTC_Z), n)

    reader = ch._all_readers[0]

    def sql(table: str = "telemetry", final: str = "FINAL", limit: int = 1000, extra: str = "") -> callable:
        def q():
            d, s0 = pick()
            return reader.query(
                f"SELECT toUnixTimestamp64Milli(ts), value_num, value_bool, value_str FROM {db}.{table} {final} "
                f"WHERE tenant_id = '{TENANT}' AND device_id = '{d}' AND metric = '{METRIC}' "
                f"AND ts >= fromUnixTimestamp64Milli({s0}) AND ts < fromUnixTimestamp64Milli({end_ms + 300_000}) "
                f"ORDER BY ts LIMIT {limit} SETTINGS max_threads = 1{extra}").result_rows
        return q

    out["query alone"] = cpu_ms(sql(), n)
    out["query, LIMIT 10"] = cpu_ms(sql(limit=10), n)
    out["query, no FINAL"] = cpu_ms(sql(final=""), n)
    out["SELECT 1"] = cpu_ms(lambda: reader.query("SELECT 1").result_rows, n)
    out["count() over the key range"] = cpu_ms(lambda: reader.query(
        f"SELECT count() FROM {db}.telemetry WHERE tenant_id = '{TENANT}' AND device_id = '{pick()[0]}' "
        f"AND metric = '{METRIC}' SETTINGS max_threads = 1").result_rows, n)
    for extra in ("max_block_size = 1024", "max_block_size = 8192", "optimize_read_in_order = 0",
                  "query_plan_optimize_lazy_materialization = 0", "use_query_condition_cache = 0",
                  "use_skip_indexes = 0", "optimize_move_to_prewhere = 0", "use_uncompressed_cache = 1",
                  "optimize_use_implicit_projections = 0", "do_not_merge_across_partitions_select_final = 1"):
        out[f"query, {extra}"] = cpu_ms(sql(extra=", " + extra), n)
    for table, settings in (("t_merged", ""), ("t_g1024", " SETTINGS index_granularity = 1024")):
        ch.command(f"CREATE TABLE {db}.{table} AS {db}.telemetry ENGINE = ReplacingMergeTree(received_at) "
                   f"PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, device_id, metric, ts){settings}")
        ch.command(f"INSERT INTO {db}.{table} SELECT * FROM {db}.telemetry")
        ch.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
        out[f"query on {table} (one part)"] = cpu_ms(sql(table=table), n)
    for name, ms in out.items():
        print(f"{name:55s} {ms:6.2f} ms CPU", flush=True)

    for threads in (1, 2, 4, 8):
        stop, counts = time.monotonic() + 6, [0] * threads

        def work(i: int, stop: float = stop, counts: list = counts) -> None:
            r = random.Random(i)
            while time.monotonic() < stop:
                d = r.choice(DEVICES)
                s0 = r.randrange(start_ms, end_ms - 1_060_000, 1000)
                store.raw_page(tenant_id=TENANT, device_id=d, metric=METRIC, limit=1000, end=end,
                               start=dt.datetime.fromtimestamp(s0 / 1000, dt.UTC))
                counts[i] += 1

        c0, w0 = time.process_time(), time.monotonic()
        ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        total = sum(counts)
        print(f"{threads} reader threads: {total / (time.monotonic() - w0):6.1f} pages/s, "
              f"{1000 * (time.process_time() - c0) / total:5.2f} ms CPU/page", flush=True)


if __name__ == "__main__":
    main()
