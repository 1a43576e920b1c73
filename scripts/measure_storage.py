"""Storage and live-delivery measurements for issue 6's closing note (a script, not a test: nothing here
asserts a number). Prints JSON:

- sink rows/s: Avro decode + row building + insert into chdb through ``ClickHouseTelemetrySink`` (the
  materialised views for the rollups and latest values run inside each insert), batches of 5,000;
- query latencies on a 1M-point series spread over 30 days: a raw page of 1,000 points, 1-minute and
  1-hour aggregates over the whole 30 days (median of 5 after one warm-up), through ``TelemetryStore``;
- memory per idle WebSocket connection: a gateway-shaped server (the real ``/v1/stream`` route, token
  check and live hub) in a child process, N authenticated and subscribed connections, RSS before/after.

Usage: .venv/bin/python scripts/measure_storage.py [--points 1000000] [--connections 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import codec  # noqa: E402
from schemas.codec import bind_local_ids  # noqa: E402
from sinks.clickhouse.client import ClickHouse  # noqa: E402
from sinks.clickhouse.schema import create_all  # noqa: E402
from sinks.clickhouse.sink import ClickHouseTelemetrySink  # noqa: E402
from sinks.clickhouse.store import TelemetryStore, align  # noqa: E402

DAYS = 30


def measure_storage(points: int, workdir: Path) -> dict:
    ch = ClickHouse(f"chdb://{workdir / 'ch'}")
    create_all(ch)
    sink, store, tel = ClickHouseTelemetrySink(ch), TelemetryStore(ch), codec("telemetry")
    end_ms = int(time.time() // 3600 * 3600 * 1000)
    start_ms = end_ms - DAYS * 86400 * 1000
    step = (end_ms - start_ms) / points
    batch, t_sink, t_write, offset = 5000, 0.0, 0.0, 0
    # the machine is shared: process CPU time (all threads, chdb's included) is reported beside wall time
    cpu0 = time.process_time()
    for b in range(0, points, batch):
        encoded = tel.encode_many({"tenant_id": "bench", "device_id": "dev-1", "event_time": int(start_ms + i * step),
                                   "receive_time": end_ms, "protocol": "mqtt", "values": {"v": float(i % 1000)}}
                                  for i in range(b, min(b + batch, points)))
        t0 = time.perf_counter()
        records = []
        for e in encoded:
            r = tel.decode(e)
            r.update(kafka_topic="fleetstream.telemetry", kafka_partition=0, kafka_offset=offset)
            offset += 1
            records.append(r)
        t1 = time.perf_counter()
        sink.write(records)
        t_write += time.perf_counter() - t1
        t_sink += time.perf_counter() - t0
    sink_cpu = time.process_time() - cpu0
    start = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC)
    end = dt.datetime.fromtimestamp(end_ms / 1000, dt.UTC)
    q = {"tenant_id": "bench", "metric": "v"}
    mid = start + dt.timedelta(days=15)

    def raw():
        return store.raw_points(device_id="dev-1", start=mid, end=end, limit=1000, **q)

    def agg(interval_s):
        s, e = align(start, end, interval_s)
        return lambda: store.downsampled(device_ids=["dev-1"], start=s, end=e, interval_s=interval_s, agg="avg", **q)

    cpu_ms: dict[str, float] = {}

    def lat(fn, name):
        fn()
        times, cpus = [], []
        for _ in range(5):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            times.append((time.perf_counter() - t0) * 1000)
            cpus.append((time.process_time() - c0) * 1000)
        cpu_ms[name] = round(statistics.median(cpus), 1)
        return round(statistics.median(times), 1), out

    raw_ms, page = lat(raw, "raw_page")
    m1_ms, m1 = lat(agg(60), "agg_1m_30d")
    h1_ms, h1 = lat(agg(3600), "agg_1h_30d")
    latest_ms, _ = lat(lambda: store.latest(tenant_id="bench", device_ids=["dev-1"]), "latest")
    counts = store.count_points(tenant_id="bench", device_id="dev-1", metric="v")
    ch.close()
    return {"points": points, "sink_rows_per_s": round(points / t_sink),
            "insert_only_rows_per_s": round(points / t_write),
            "sink_rows_per_cpu_s": round(points / sink_cpu), "query_cpu_ms": cpu_ms,
            "raw_page_1000_ms": raw_ms, "raw_page_len": len(page),
            "agg_1m_30d_ms": m1_ms, "agg_1m_buckets": len(m1["dev-1"].points), "agg_1m_source": m1["dev-1"].source,
            "agg_1h_30d_ms": h1_ms, "agg_1h_buckets": len(h1["dev-1"].points), "agg_1h_source": h1["dev-1"].source,
            "latest_ms": latest_ms, "counts_raw_1m_1h": counts}


SERVER = """
import sys, uvicorn
from pathlib import Path
from fastapi import FastAPI
from gateway.auth.tokens import KeyRing
from gateway.live import websocket
from gateway.live.hub import LiveHub
app = FastAPI()
app.include_router(websocket.router, prefix="/v1")
app.state.keys = KeyRing(Path(sys.argv[1]))
app.state.live = LiveHub("127.0.0.1:1", queue_size=256)  # not started: idle connections only
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", ws=sys.argv[3])
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _open(url: str, n: int) -> list:
    from websockets.asyncio.client import connect

    conns = []
    for i in range(n):
        ws = await connect(url)
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "id": "s", "devices": [f"d{i}"]}))
        await ws.recv()
        conns.append(ws)
    return conns


def measure_websockets(n: int, workdir: Path, ws_impl: str, port: int = 18799) -> dict:
    from gateway.auth.tokens import KeyRing

    keys_dir = workdir / "keys"
    token = KeyRing(keys_dir).issue(tenant_id="bench", client_id="bench", scopes=["telemetry:read"], ttl_s=3600)
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(keys_dir), str(port), ws_impl], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts the server slowly
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        url = f"ws://127.0.0.1:{port}/v1/stream?access_token={token}"
        loop = asyncio.new_event_loop()
        warm = loop.run_until_complete(_open(url, 20))  # imports, first-connection allocations
        time.sleep(1)
        before = rss_kib(proc.pid)
        conns = loop.run_until_complete(_open(url, n))
        time.sleep(2)
        after = rss_kib(proc.pid)
        for ws in conns + warm:
            loop.run_until_complete(ws.close())
        loop.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return {"connections": n, "uvicorn_ws": ws_impl, "server_rss_before_kib": before, "server_rss_after_kib": after,
            "kib_per_idle_connection": round((after - before) / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--ws", default="auto", help="uvicorn WebSocket implementation: auto | websockets | websockets-sansio | wsproto")
    ap.add_argument("--skip-storage", action="store_true")
    args = ap.parse_args()
    bind_local_ids()  # no registry: only this process reads what it encodes
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fs-measure-") as tmp:
        storage = None if args.skip_storage else measure_storage(args.points, Path(tmp))
        print(json.dumps({"storage": storage}), file=sys.stderr, flush=True)  # kept if the next part fails
        out = {"storage": storage, "websocket": measure_websockets(args.connections, Path(tmp), args.ws),
               "machine": {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg()}}
    out["machine"]["loadavg_before"] = load_before  # the machine is shared: read the numbers with this
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
