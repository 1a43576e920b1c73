"""CPU cost of the ClickHouse telemetry sink alone: validated telemetry records (3 values each) are
produced to ``fleetstream.telemetry``, a ``BatchingSink`` with the telemetry sink runs in this process
against a fresh chdb directory, and the process CPU time is divided by the messages and rows written.
A measurement, not a test.

    .venv/bin/python scripts/sink_throughput.py --messages 60000                # produce all, then drain
    .venv/bin/python scripts/sink_throughput.py --rate 1000 --duration 30      # paced: CPU per message at a rate
    .venv/bin/python scripts/sink_throughput.py --bootstrap HOST:PORT ...      # an already running Kafka

Without ``--bootstrap`` a Kafka of its own starts in a temporary directory on ports shifted by
FLEETSTREAM_TEST_PORT_OFFSET (default 1600). Producing runs in a child process so its CPU is not counted.
The sink's process CPU includes chdb's own threads (inserts, materialised views, background merges); the
idle CPU of the sink (no records) is measured first and subtracted, and reported separately.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from confluent_kafka import Producer

from runtime.settings import Settings
from schemas import codec, device_key, topics
from schemas.codec import bind_local_ids


def _produce(bootstrap: str, total: int, rate: float, tenants: list[str], devices: int, t0: int) -> None:
    """Child process: ``total`` smart-meter-like records, paced at ``rate``/s (0: as fast as possible)."""
    bind_local_ids()  # a spawned process: binds the same fixed ids as the sink's
    tel = codec("telemetry")
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": "murmur2_random"})
    start = time.monotonic()
    for i in range(total):
        if rate and i % 100 == 0:
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        tenant, dev = tenants[i % len(tenants)], f"meter-{i % devices:05d}"
        now = t0 + i
        p.produce(topics.TELEMETRY.name, key=device_key(tenant, dev), value=tel.encode({
            "tenant_id": tenant, "device_id": dev, "event_time": now, "receive_time": now + 3, "protocol": "mqtt",
            "values": {"voltage": 229.0 + random.random() * 2, "power_w": 80.0 + i % 40, "energy_kwh": i * 0.001},
            "device_type": "smart-meter", "tags": ["site-a"]}))
        p.poll(0)
    p.flush(60)


def _start_kafka(root: Path) -> tuple[Settings, object]:
    from fleetstream.stack import kafka
    from fleetstream.stack.process import port_open

    off = int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "1600"))
    s = Settings(data_dir=root, kafka_port=19092 + off, kafka_controller_port=19093 + off)
    child = kafka.kafka_child(s)
    child.start()
    child.wait_until(lambda: port_open(s.host, s.kafka_port) and kafka.kafka_ready(s.kafka), 90,
                     "kafka metadata")
    kafka.ensure_topics(s.kafka, s.kafka_partitions)
    return s, child


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=60_000, help="with no --rate: messages produced up front")
    ap.add_argument("--rate", type=float, default=0, help="messages/s produced while the sink runs")
    ap.add_argument("--duration", type=float, default=30, help="with --rate: seconds of load")
    ap.add_argument("--batch-size", type=int, default=Settings.model_fields["sink_batch_size"].default)
    ap.add_argument("--batch-ms", type=int, default=Settings.model_fields["sink_batch_ms"].default)
    ap.add_argument("--tenants", type=int, default=3)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--idle-s", type=float, default=5, help="seconds of idle CPU measured before the load")
    ap.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    bind_local_ids()  # no registry: producer and sink here are this script's alone

    from sinks.base import BatchingSink
    from sinks.clickhouse.client import ClickHouse
    from sinks.clickhouse.schema import create_all
    from sinks.clickhouse.sink import ClickHouseTelemetrySink

    root = Path(tempfile.mkdtemp(prefix="fs-sink-tp-"))
    kafka_child = None
    try:
        if a.bootstrap:
            bootstrap = a.bootstrap
        else:
            s, kafka_child = _start_kafka(root)
            bootstrap = s.bootstrap_servers
        ch = ClickHouse(f"chdb://{root / 'ch'}")
        create_all(ch)
        total = int(a.rate * a.duration) if a.rate else a.messages
        tenants = [str(uuid.uuid4()) for _ in range(a.tenants)]
        t0 = int(time.time() * 1000) - 3_600_000
        producer = mp.get_context("spawn").Process(
            target=_produce, args=(bootstrap, total, a.rate, tenants, a.devices, t0))
        if not a.rate:  # drain mode: everything is in Kafka before the sink starts
            t_p = time.monotonic()
            producer.start()
            producer.join()
            produce_s = time.monotonic() - t_p
        sink = BatchingSink(ClickHouseTelemetrySink(ch), kafka=bootstrap, topic=topics.TELEMETRY.name,
                            record="telemetry", group_id=f"sink-tp-{uuid.uuid4().hex[:8]}",
                            batch_size=a.batch_size, batch_ms=a.batch_ms)
        me = psutil.Process()

        def cpu() -> float:
            t = me.cpu_times()
            return t.user + t.system

        sink.start()
        if not sink.ready.wait(60):
            raise SystemExit("sink got no partition assignment")
        c1, w1, r1 = cpu(), time.monotonic(), 0
        if a.rate:
            producer.start()
        deadline = time.monotonic() + (a.duration * 3 + 120 if a.rate else 600)
        while sink.stats["records"] - r1 < total and time.monotonic() < deadline:
            time.sleep(0.05)
        # rollups recomputed after the writes (adr/0114) are part of the sink's cost: the last refresh too
        while getattr(sink.sink, "rollups_pending", False) and time.monotonic() < deadline:
            time.sleep(0.05)
        c2, w2 = cpu(), time.monotonic()
        producer.join(30)
        written = sink.stats["records"] - r1
        time.sleep(1)  # let the last merges settle, then the idle cost: the sink polling an empty topic
        c3, w3 = cpu(), time.monotonic()
        time.sleep(a.idle_s)
        idle_per_s = (cpu() - c3) / (time.monotonic() - w3)
        busy = max(0.0, (c2 - c1) - idle_per_s * (w2 - w1))
        out = {
            "mode": f"paced {a.rate:g}/s" if a.rate else "drain",
            "messages": written, "rows": written * 3, "batches": sink.stats["batches"],
            "batch_size": a.batch_size, "batch_ms": a.batch_ms,
            "wall_s": round(w2 - w1, 2), "cpu_s": round(c2 - c1, 2),
            "idle_cpu_pct": round(100 * idle_per_s, 1),
            "cpu_us_per_msg": round(1e6 * busy / max(1, written), 1),
            "cpu_us_per_row": round(1e6 * busy / max(1, written * 3), 2),
            "rows_per_cpu_s": round(written * 3 / busy) if busy else None,
            "last_write_ms": round(sink.stats["last_write_ms"], 1),
        }
        if not a.rate:
            out["produce_s"] = round(produce_s, 1)
        if hasattr(sink.sink, "rollup_stats"):
            out["rollup_refreshes"] = {k: round(v, 2) for k, v in sink.sink.rollup_stats.items()}
        sink.stop()
        rows = ch.query_rows("SELECT count() FROM fleetstream.telemetry")[0][0]
        out["rows_in_clickhouse"] = int(rows)
        ch.close()
        print(json.dumps(out) if a.json else "\n".join(f"{k:>16}: {v}" for k, v in out.items()))
    finally:
        if kafka_child is not None:
            kafka_child.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
