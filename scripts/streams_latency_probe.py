"""The streams worker alone, measured: raw telemetry produced at fixed rates straight to Kafka; for each rate
it prints the latency of (arrival on fleetstream.telemetry - event time) p50/p90/p99/max, how long after the
last record the device-activity agent had handled every reading (rules ``/stats/``), and the worker's CPU
µs per record (process CPU time over the step, idle CPU subtracted). A measurement, not a test.

    .venv/bin/python scripts/streams_latency_probe.py --rates 1000,2000,5000 --duration 20 [--devices 1000]
        [--rules 2] [--unregistered] [--profile DIR]

Starts its own Kafka + Mosquitto + Postgres + streams worker on ports offset by FLEETSTREAM_TEST_PORT_OFFSET
(default 950) in a temporary data directory. Devices are registered (active, with a type and tags) unless
``--unregistered``; ``--rules`` threshold rules on the tenant make the rules handler decode and evaluate
every reading. ``--profile DIR`` records a py-spy profile of the worker for each rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition

from fleetstream.stack.supervisor import Stack
from runtime.settings import Settings
from schemas import codec, device_key, topics


def _get(url: str, s: Settings) -> dict:
    from streams.app import web_auth_headers

    with urllib.request.urlopen(urllib.request.Request(url, headers=web_auth_headers(s)), timeout=5) as r:
        return json.loads(r.read())


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


class Arrivals:
    """Follows fleetstream.telemetry from its end; latency = arrival - event time (set at produce)."""

    def __init__(self, bootstrap: str):
        self.bootstrap, self.lat, self.done = bootstrap, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()

    def _run(self) -> None:
        tc = codec("telemetry")
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "probe", "fetch.wait.max.ms": 5})
        md = c.list_topics(topics.TELEMETRY.name, timeout=10).topics[topics.TELEMETRY.name]
        c.assign([TopicPartition(topics.TELEMETRY.name, p, -1) for p in md.partitions])
        self.ready.set()
        while not self.done.is_set():
            for m in c.consume(1000, 0.1):
                if not m.error():
                    self.lat.append(time.time() * 1000 - tc.decode(m.value())["event_time"])
        c.close()


def step(s: Settings, stack: Stack, tenant: str, devices: int, rate: float, duration: float,
         profile: Path | None) -> dict:
    pid = next(c.pid for c in stack.children if c.name == "streams")
    proc = psutil.Process(pid)
    stats_url = f"http://{s.host}:{s.streams_web_port}/stats/"
    validate_url = f"http://{s.host}:{s.streams_web_port}/validate/stats/"
    # idle CPU of the worker (timers, view threads, consumer polls) over 5 s, subtracted below
    c0, w0 = _cpu(proc), time.monotonic()
    time.sleep(5)
    idle_per_s = (_cpu(proc) - c0) / (time.monotonic() - w0)

    arrivals = Arrivals(s.bootstrap_servers)
    arrivals.thread.start()
    arrivals.ready.wait(15)
    time.sleep(1)
    base = _get(stats_url, s)["rules"]["records"]
    vcpu0 = _get(validate_url, s)["cpu_s"]  # also resets the stage's own lag percentiles
    tc = codec("telemetry")
    p = Producer({"bootstrap.servers": s.bootstrap_servers, "linger.ms": 1, "partitioner": "murmur2_random"})
    n = int(rate * duration)
    spy = None
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if profile is not None and py_spy:
        profile.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(int(duration)),
                                "--rate", "100", "--format", "speedscope", "--threads", "--gil",
                                "-o", str(profile / f"streams-{int(rate)}.json")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c0, t0 = _cpu(proc), time.monotonic()
    for i in range(n):
        now, dev = int(time.time() * 1000), f"d{i % devices}"
        rec = {"tenant_id": tenant, "device_id": dev, "event_time": now, "receive_time": now, "protocol": "mqtt",
               "values": {"temperature": 20.0 + i % 50, "b": 2.0, "c": 3.0}, "device_type": None, "tags": []}
        while True:
            try:
                p.produce(topics.TELEMETRY_RAW.name, tc.encode(rec), device_key(tenant, dev))
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
        pause = t0 + (i + 1) / rate - time.monotonic()
        if pause > 0.002:
            time.sleep(pause)
    p.flush(30)
    sent_s = time.monotonic() - t0
    deadline = time.monotonic() + 120
    validated_at = activity_at = None
    while time.monotonic() < deadline and (validated_at is None or activity_at is None):
        if validated_at is None and len(arrivals.lat) >= n:
            validated_at = time.monotonic() - t0
        if activity_at is None and _get(stats_url, s)["rules"]["records"] - base >= n:
            activity_at = time.monotonic() - t0
        time.sleep(0.05)
    cpu = _cpu(proc) - c0 - idle_per_s * (time.monotonic() - t0)
    vstats = _get(validate_url, s)
    vcpu = vstats["cpu_s"] - vcpu0
    arrivals.done.set()
    arrivals.thread.join()
    if spy is not None:
        spy.wait(60)
    lat = sorted(arrivals.lat)
    out = {"rate": rate, "sent": n, "offered_per_s": round(n / sent_s), "delivered": len(lat),
           "cpu_us_per_record": round(cpu / n * 1e6),
           "validate_thread_cpu_us_per_record": round(vcpu / n * 1e6),
           "validate_batches": vstats.get("batches_since_last"),
           "validate_own_lag_p50_p99_ms": [vstats.get("batch_lag_p50_ms"), vstats.get("batch_lag_p99_ms")],
           "validate_slowest_batch": vstats.get("slowest_batch"), "idle_cpu_pct": round(idle_per_s * 100, 1),
           "validated_after_s": validated_at and round(validated_at - sent_s, 2),
           "activity_done_after_s": activity_at and round(activity_at - sent_s, 2),
           "load": [round(x, 1) for x in os.getloadavg()]}
    if lat:
        out.update({f"p{q}_ms": round(lat[min(len(lat) - 1, int(len(lat) * q / 100))]) for q in (50, 90, 99)})
        out["max_ms"] = round(lat[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1000,2000,5000")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rules", type=int, default=2)
    ap.add_argument("--unregistered", action="store_true")
    ap.add_argument("--profile", type=Path)
    a = ap.parse_args()
    off = int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "950"))
    root = Path(tempfile.mkdtemp(prefix="fs-probe-"))
    s = Settings(data_dir=root, kafka_port=19092 + off, kafka_controller_port=19093 + off,
                 mqtt_tls_port=18883 + off, postgres_port=15432 + off, gateway_port=18080 + off,
                 schema_registry_port=18081 + off, streams_web_port=18090 + off)
    stack = Stack(s)
    try:
        stack.start_infra()
        tenant = str(uuid.uuid4())
        p = Producer({"bootstrap.servers": s.bootstrap_servers, "partitioner": "murmur2_random"})
        now = int(time.time() * 1000)
        if not a.unregistered:
            for d in range(a.devices):
                entry = {"tenant_id": tenant, "device_id": f"d{d}", "status": "active", "device_type": "probe",
                         "tags": ["probe"], "attributes": {}, "jwt_public_keys": [], "version": 1, "time": now}
                p.produce(topics.REGISTRY.name, codec("registry_entry").encode(entry), device_key(tenant, f"d{d}"))
        for i in range(a.rules):
            doc = {"tenant_id": tenant, "rule_id": f"r{i}", "version": 1, "enabled": True,
                   "document_json": json.dumps({"name": f"r{i}", "actions": [{"type": "alert"}],
                                                "condition": {"type": "threshold", "metric": "temperature",
                                                              "op": ">", "value": 60 + i}})}
            p.produce(topics.RULES.name, codec("rule_entry").encode(doc), f"{tenant}:r{i}".encode())
        p.flush(30)
        stack.start_platform(roles=("streams",))
        time.sleep(8)  # group join and assignment
        # one reading per device first: the devices' first status change, rule state and changelog writes are
        # a one-off cost, not the steady state the steps measure
        print(json.dumps({"warm_up": step(s, stack, tenant, a.devices, a.devices, 1, None)}), flush=True)
        print(json.dumps({"devices": a.devices, "rules": a.rules, "registered": not a.unregistered,
                          "data_dir": str(root)}), flush=True)
        for rate in (float(r) for r in a.rates.split(",")):
            print(json.dumps(step(s, stack, tenant, a.devices, rate, a.duration, a.profile)), flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
