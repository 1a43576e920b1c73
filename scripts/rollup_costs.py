"""What exact rollups cost (adr/0114): a measurement, not a test. On a fresh chdb directory, through the
telemetry sink's own write path (``write_raw``: ClickHouse decodes the Avro batch), it writes a history of
readings and prints JSON with

- insert: wall and process CPU (chdb's threads included: views and merges), rows per CPU-second, for the
  history (``--batch`` records an insert) and for a live stream (``--live-devices`` reporting every
  ``--live-step-s``, one insert per second of data, as the sink batches a paced stream);
- refresh (when the code has ``sinks.clickhouse.rollups``): the rollup recompute, once for the whole
  history, then once per 10 live inserts (what the sink does every 10 s under load);
- read latencies through ``TelemetryStore.downsampled`` (median of 9 after a warm-up, merges settled): one
  device's day of 1 h buckets, of 1 m buckets, and the day of 1 h buckets of every device
  (``/v1/telemetry/series``), with everything rolled up and with the devices' newest readings pending.

Runs the code it is imported with, so the same script measures the code before a change with
``PYTHONPATH=<checkout of the old code>``.

    .venv/bin/python scripts/rollup_costs.py --devices 100 --hours 24 --step-s 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from schemas import codec
from schemas.codec import bind_local_ids
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseTelemetrySink
from sinks.clickhouse.store import TelemetryStore, align

TOPIC = "fleetstream.telemetry"


def _records(tenant: str, devices: int, start_ms: int, end_ms: int, step_ms: int, prefix: str = "meter"):
    """Every device once per ``step_ms``, spread evenly over the step, between start and end."""
    for ts in range(start_ms, end_ms, step_ms):
        for d in range(devices):
            at = ts + d * step_ms // devices
            if at >= end_ms:
                break
            yield {"tenant_id": tenant, "device_id": f"{prefix}-{d:05d}", "event_time": at, "receive_time": at + 5,
                   "protocol": "mqtt", "values": {"voltage": 229.0 + (ts // step_ms + d) % 20 * 0.25,
                                                  "power_w": float((ts // 1000 + d) % 400), "energy_kwh": ts / 3.6e9}}


def _median_ms(fn, n: int = 9) -> dict:
    """Median wall and process-CPU milliseconds (the machine is shared: CPU is the steadier number)."""
    fn()
    walls, cpus = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return {"wall": round(statistics.median(walls), 1), "cpu": round(statistics.median(cpus), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--step-s", type=int, default=10, help="seconds between a device's readings")
    ap.add_argument("--batch", type=int, default=20_000, help="records per insert (the sink's default batch)")
    ap.add_argument("--live-devices", type=int, default=10_000)
    ap.add_argument("--live-step-s", type=int, default=10, help="live: 10,000 devices every 10 s = 1,000 msg/s")
    ap.add_argument("--live-batches", type=int, default=10, help="live inserts (seconds) between refreshes")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of live inserts + one refresh")
    a = ap.parse_args()
    bind_local_ids()  # no registry: the sink here reads what this process encodes
    tel = codec("telemetry")
    try:
        from sinks.clickhouse import rollups
    except ImportError:
        rollups = None
    with tempfile.TemporaryDirectory(prefix="fs-rollup-costs-") as tmp:
        ch = ClickHouse(f"chdb://{Path(tmp) / 'ch'}")
        create_all(ch)
        sink, store = ClickHouseTelemetrySink(ch), TelemetryStore(ch)
        if rollups:
            sink.on_assigned({(TOPIC, 0): 0})
        offset = 0
        end_ms = int(time.time() // 60 * 60 * 1000)
        start_ms = end_ms - a.hours * 3_600_000
        step = a.step_s * 1000

        def write(records) -> tuple[float, float, int]:
            nonlocal offset
            items = []
            for r in records:
                items.append((tel.encode(r), 0, offset))
                offset += 1
            w0, c0 = time.perf_counter(), time.process_time()
            sink.write_raw(items)
            return time.perf_counter() - w0, time.process_time() - c0, len(items)

        def refresh() -> tuple[float, float]:
            w0, c0 = time.perf_counter(), time.process_time()
            if rollups:
                rollups.refresh(ch, ch.database, [0])
            return time.perf_counter() - w0, time.process_time() - c0

        history = list(_records("bench", a.devices, start_ms, end_ms, step))
        hist = [write(history[i:i + a.batch]) for i in range(0, len(history), a.batch)]
        first_refresh = refresh()
        # live: each insert is the next second of a paced stream
        live_ins, live_ref = [], []
        t, live_step = end_ms, a.live_step_s * 1000
        for _ in range(a.rounds):
            for _ in range(a.live_batches):
                second = [r for r in _records("bench", a.live_devices, t - t % live_step, t - t % live_step + live_step,
                                              live_step, prefix="live") if t <= r["event_time"] < t + 1000]
                live_ins.append(write(second))
                t += 1000
            live_ref.append(refresh())
        day_end = dt.datetime.fromtimestamp(t / 1000, dt.UTC)
        devices = [f"meter-{d:05d}" for d in range(a.devices)]

        def read(device_ids, interval_s):
            s, e = align(day_end - dt.timedelta(days=1), day_end, interval_s)
            return lambda: store.downsampled(tenant_id="bench", device_ids=device_ids, metric="power_w", start=s,
                                             end=e, interval_s=interval_s, agg="avg")

        def settle() -> None:  # background merges would be counted as the reads' CPU
            deadline = time.monotonic() + 120
            while ch.query_rows("SELECT count() FROM system.merges")[0][0] and time.monotonic() < deadline:
                time.sleep(0.5)

        reads = {}
        for state in ("rolled_up", "one_batch_pending"):
            if state == "one_batch_pending":  # the next readings of every device, not yet rolled up
                write(list(_records("bench", a.devices, t, t + step, step)))
            settle()
            reads[state] = {"one_device_day_1h_ms": _median_ms(read(devices[:1], 3600)),
                            "one_device_day_1m_ms": _median_ms(read(devices[:1], 60)),
                            f"{a.devices}_devices_day_1h_ms": _median_ms(read(devices, 3600))}

        def per_row(batches):
            n = sum(b[2] for b in batches) * 3
            return {"batches": len(batches), "rows": n, "wall_s": round(sum(b[0] for b in batches), 2),
                    "cpu_s": round(sum(b[1] for b in batches), 2),
                    "rows_per_cpu_s": round(n / max(1e-9, sum(b[1] for b in batches)))}

        out = {"code": "recomputed rollups (adr/0114)" if rollups else "insert-time views (adr/0060)",
               "history": {"devices": a.devices, "hours": a.hours, "step_s": a.step_s},
               "live": {"devices": a.live_devices, "step_s": a.live_step_s,
                        "msg_per_s": round(a.live_devices / a.live_step_s)},
               "insert_history": per_row(hist), "insert_live": per_row(live_ins),
               "refresh_history": {"wall_s": round(first_refresh[0], 2), "cpu_s": round(first_refresh[1], 2)},
               "refresh_live_every_10_inserts": {
                   "median_wall_s": round(statistics.median(r[0] for r in live_ref), 3),
                   "median_cpu_s": round(statistics.median(r[1] for r in live_ref), 3)},
               "reads": reads, "loadavg": os.getloadavg()}
        ch.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
