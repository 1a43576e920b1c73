"""What the embedded telemetry sink costs per record and where, in one process (issue 18; a script, not a
test: nothing here asserts a number). No Kafka: records are encoded as the validate agent writes them and
handed to ``ClickHouseTelemetrySink.write_raw`` in batches, the rollups refreshed every ``--refresh-every``
records, as the sink does every 10 s under load.

Prints, per batch size: wall and process CPU (all threads, chdb's included: the figure that carries across a
busy machine) per 1,000 records for the inserts and for the rollup refreshes, and the records/s one sink
thread drains when it has a core to itself; and the disk each stored point takes (compressed column data of
every table the sink writes, as inserted and after the merges ClickHouse does in the background:
``OPTIMIZE ... FINAL``), the figure ops/measured.json's ``clickhouse.compressed_bytes_per_row`` wants. The
readings are the simulator's (``--payload``), so their values compress as the benchmark fleet's do; set
``--rate`` to the fleet's real reporting rate (devices / interval) for realistic timestamp deltas.

Usage: .venv/bin/python scripts/sink_cost.py [--records 200000] [--devices 200] [--batches 1000,5000,20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleetstream.sim.payloads import payload  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from schemas import codec  # noqa: E402
from schemas.codec import bind_local_ids  # noqa: E402
from sinks.clickhouse import schema  # noqa: E402
from sinks.clickhouse.client import ClickHouse  # noqa: E402
from sinks.clickhouse.latest import LatestCache  # noqa: E402
from sinks.clickhouse.sink import ClickHouseTelemetrySink  # noqa: E402

PARTITIONS = 6
TENANT = "tenant-s"


def records(n: int, devices: int, start_ms: int, rate: float, kind: str = "smart-meter") -> list[tuple[bytes, int, int]]:
    """The simulator's readings (3 points each), round-robin over the devices, ``rate`` messages/s over the fleet:
    (value, partition, offset) as the sink's consumer hands them over."""
    tel = codec("telemetry")
    render = payload(kind)
    offsets = [0] * PARTITIONS
    out = []
    for i in range(n):
        d = i % devices
        t = start_ms + int(i * 1000 / rate)
        values = json.loads(render(t, i // devices))["values"]
        value = tel.encode({"tenant_id": TENANT, "device_id": f"m-{d}", "event_time": t, "receive_time": t + 40,
                            "protocol": "mqtt", "device_type": kind, "tags": [], "values": values})
        p = d % PARTITIONS
        out.append((value, p, offsets[p]))
        offsets[p] += 1
    return out


def run(batch: int, items: list, refresh_every: int, drop: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="sink-cost-") as tmp:
        ch = ClickHouse(Settings(data_dir=Path(tmp)).chdb_dsn)
        try:
            schema.create_all(ch)
            for view in drop:  # what a view costs the insert
                ch.command(f"DROP VIEW fleetstream.{view}")
            sink = ClickHouseTelemetrySink(ch, rollup_every_s=0, on_written=LatestCache().written)  # as the gateway
            sink.on_assigned({("t", p): 0 for p in range(PARTITIONS)})
            parts = [("t", p) for p in range(PARTITIONS)]
            ins_wall = ins_cpu = ref_wall = ref_cpu = 0.0
            since = 0
            refreshes: list[int] = []  # CPU ms of each refresh: does it grow with the table?
            for i in range(0, len(items), batch):
                w0, c0 = time.perf_counter(), time.process_time()
                sink.write_raw(items[i:i + batch])
                ins_wall += time.perf_counter() - w0
                ins_cpu += time.process_time() - c0
                since += batch
                if since >= refresh_every or i + batch >= len(items):
                    since = 0
                    w0, c0 = time.perf_counter(), time.process_time()
                    sink.maintain(parts, idle=True)  # idle: now, whatever the interval (the script decides when)
                    ref_wall += time.perf_counter() - w0
                    ref_cpu += time.process_time() - c0
                    refreshes.append(round(1000 * (time.process_time() - c0)))
            rows = ch.query_rows("SELECT count() FROM fleetstream.telemetry")[0][0]
            parts_n = ch.query_rows("SELECT count() FROM system.parts WHERE database = 'fleetstream' AND active "
                                    "AND table = 'telemetry'")[0][0]
            disk = {"as inserted": _disk(ch)}
            for table in ("telemetry", "telemetry_1m", "telemetry_1h", "rollup_marks"):
                ch.command(f"OPTIMIZE TABLE fleetstream.{table} FINAL")
            disk["merged"] = _disk(ch)
        finally:
            ch.close()
    k = len(items) / 1000
    return {"batch": batch, "rows": rows, "active parts": parts_n,
            "insert wall ms/1k": round(1000 * ins_wall / k, 1), "insert CPU ms/1k": round(1000 * ins_cpu / k, 1),
            "refresh wall ms/1k": round(1000 * ref_wall / k, 1), "refresh CPU ms/1k": round(1000 * ref_cpu / k, 1),
            "drain records/s (wall)": round(len(items) / (ins_wall + ref_wall)),
            "refresh CPU ms, each": refreshes,
            **{f"bytes/point {when}": {t: round(b / rows, 2) for t, b in d.items()} | {"all": round(sum(d.values()) / rows, 2)}
               for when, d in disk.items()}}


def _disk(ch: ClickHouse) -> dict[str, int]:
    """Compressed bytes of each table's active parts (column data; the primary index and marks are extra)."""
    return dict(ch.query_rows("SELECT table, sum(data_compressed_bytes) FROM system.parts WHERE database = "
                              "'fleetstream' AND active GROUP BY table ORDER BY table"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--batches", default="1000,5000,20000")
    ap.add_argument("--drop", default="", help="comma-separated views to drop first (e.g. telemetry_latest_mv)")
    ap.add_argument("--rate", type=float, default=8_300, help="messages/s the event times are spread at")
    ap.add_argument("--payload", default="smart-meter", help="the simulator's payload: smart-meter, tracker, plc")
    ap.add_argument("--refresh-every", type=int, default=83_000, help="records between refreshes (10 s at 8.3k/s)")
    a = ap.parse_args()
    bind_local_ids()  # the ids of the repo's schemas, as tests bind them: no registry here
    items = records(a.records, a.devices, int(time.time() * 1000 - a.records * 1000 / a.rate), a.rate, a.payload)
    print(f"{a.records} records, {a.devices} devices, 3 points each, refresh every {a.refresh_every} records")
    for b in (int(x) for x in a.batches.split(",")):
        print(run(b, items, a.refresh_every, [v for v in a.drop.split(",") if v]), flush=True)


if __name__ == "__main__":
    main()
