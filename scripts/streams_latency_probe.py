"""Latency of the streams worker alone: raw telemetry produced at a fixed rate straight to Kafka, consumed
from fleetstream.telemetry; prints p50/p90/p99/max of (arrival - event time). A measurement, not a test.

    .venv/bin/python scripts/streams_latency_probe.py RATE_PER_S DURATION_S

Starts its own Kafka + Mosquitto + Postgres + streams worker on ports offset by FLEETSTREAM_TEST_PORT_OFFSET
(default 950) in a temporary data directory; a py-spy dump of the worker mid-run lands there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from fleetstream.settings import Settings
from fleetstream.stack.supervisor import Stack
from schemas import codec, device_key, topics


def main(rate: float, duration: float) -> None:
    off = int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "950"))
    root = Path(tempfile.mkdtemp(prefix="fs-probe-"))
    s = Settings(data_dir=root, kafka_port=19092 + off, kafka_controller_port=19093 + off,
                 mqtt_tls_port=18883 + off, postgres_port=15432 + off, gateway_port=18080 + off,
                 streams_web_port=18090 + off)
    stack = Stack(s)
    try:
        stack.start_infra()
        stack.start_platform(roles=("streams",))
        time.sleep(8)  # group join and assignment
        tc = codec("telemetry")
        latencies: list[float] = []
        done = threading.Event()

        def consume() -> None:
            c = Consumer({"bootstrap.servers": s.bootstrap_servers, "group.id": "probe"})
            md = c.list_topics(topics.TELEMETRY.name, timeout=10).topics[topics.TELEMETRY.name]
            c.assign([TopicPartition(topics.TELEMETRY.name, p, -1) for p in md.partitions])
            while not done.is_set():
                m = c.poll(0.1)
                if m is not None and not m.error():
                    latencies.append(time.time() * 1000 - tc.decode(m.value())["event_time"])
            c.close()

        reader = threading.Thread(target=consume)
        reader.start()
        time.sleep(3)
        p = Producer({"bootstrap.servers": s.bootstrap_servers, "linger.ms": 1})
        tenant, n, t0 = str(uuid.uuid4()), int(rate * duration), time.time()
        for i in range(n):
            now, dev = int(time.time() * 1000), f"d{i % 50}"
            rec = {"tenant_id": tenant, "device_id": dev, "event_time": now, "receive_time": now, "protocol": "mqtt",
                   "values": {"a": 1.0, "b": 2.0, "c": 3.0}, "device_type": None, "tags": []}
            p.produce(topics.TELEMETRY_RAW.name, tc.encode(rec), device_key(tenant, dev))
            p.poll(0)
            if i == n // 2 and shutil.which("py-spy"):
                pid = next(c.pid for c in stack.children if c.name == "streams")
                with open(root / "streams-dump.txt", "w") as out:
                    subprocess.run([shutil.which("py-spy"), "dump", "--pid", str(pid)], stdout=out)
            pause = t0 + (i + 1) / rate - time.time()
            if pause > 0:
                time.sleep(pause)
        p.flush()
        time.sleep(15)
        done.set()
        reader.join()
        lat = sorted(latencies)
        if lat:
            print(f"rate={rate:.0f}/s n={len(lat)}/{n} p50={lat[len(lat) // 2]:.0f} p90={lat[int(len(lat) * .9)]:.0f} "
                  f"p99={lat[int(len(lat) * .99)]:.0f} max={lat[-1]:.0f} ms; load {os.getloadavg()}")
        else:
            print("no records arrived")
    finally:
        stack.stop()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 200, float(sys.argv[2]) if len(sys.argv) > 2 else 20)
