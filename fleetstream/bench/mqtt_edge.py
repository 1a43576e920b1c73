"""CPU per message of the MQTT edge alone: load generator → Mosquitto → MQTT connector → raw topic.

``python -m fleetstream.bench.mqtt_edge --devices 200 --rates 1000,2000,5000 --seconds 20 [--profile DIR]``

Starts Kafka, Mosquitto and Postgres on ports shifted by ``--port-offset`` (no streams, sink or gateway:
their CPU would blur the edge's), one MQTT connector, a provisioned fleet and the real load generator.
For each rate it reports messages that reached ``fleetstream.telemetry.raw`` per second (high-watermark
deltas, one record per message) and each process's CPU time divided by those messages. A measurement
script, not a test: CPU µs/msg holds up on a shared machine, wall-clock rates do not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .probes import cpu_seconds


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of one process (/proc/<pid>/task/<tid>/comm): which loop costs what."""
    out: dict[str, float] = {}
    try:
        for t in psutil.Process(pid).threads():
            try:
                name = Path(f"/proc/{pid}/task/{t.id}/comm").read_text().strip()
            except OSError:
                name = str(t.id)
            out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    except psutil.Error:
        pass
    return out


def _raw_offsets(consumer, topic: str) -> int:
    from confluent_kafka import TopicPartition

    md = consumer.list_topics(topic, timeout=10).topics[topic]
    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rates", default="1000,2000,5000")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--port-offset", type=int, default=1300)
    ap.add_argument("--workers", type=int, default=None, help="generator processes (default: automatic)")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the connector at each rate into DIR")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--receive-maximum", type=int, default=None, help="the connector's MQTT in-flight window")
    args = ap.parse_args()


    from fleetstream.sim import Generator, provision
    from fleetstream.stack.supervisor import Stack
    from runtime.settings import Settings
    from schemas import topics

    base = Settings()
    ports = {name: getattr(base, name) + args.port_offset for name, f in Settings.model_fields.items()
             if name.endswith("_port") and f.annotation is int}
    ports["metrics_port"] = 0
    data = Path(tempfile.mkdtemp(prefix="fleetstream-edgebench-"))
    s = Settings(data_dir=data, **ports, ingest_rate_per_s=1e9, ingest_burst=1e9)
    stack = Stack(s)
    gen = None
    results = []
    try:
        stack.start_infra()
        cfg = data / "connector.yaml"
        cfg.write_text("client_id: edgebench-0\nrate_limit: {per_second: 1000000000, burst: 1000000000}\n"
                       + (f"receive_maximum: {args.receive_maximum}\n" if args.receive_maximum else ""))
        conn = stack._spawn(stack.platform_child("connector-mqtt", ["--config", str(cfg)]))
        mosq = next(c for c in stack.children if c.name == "mosquitto")
        fleet, took = provision(s, args.devices, out_dir=data / "fleet", prefix="edge")
        print(f"provisioned {args.devices} devices in {took:.1f}s", file=sys.stderr)
        rates = [float(r) for r in args.rates.split(",")]
        gen = Generator(fleet, s.mqtt_broker_host, s.mqtt_tls_port, workers=args.workers, max_rate=max(rates))
        print(f"connected {gen.start()} devices in {len(gen.procs)} processes", file=sys.stderr)
        cons = s.kafka.consumer("edgebench")
        roles = {"generator": lambda: gen.pids, "mosquitto": lambda: [mosq.pid], "connector": lambda: [conn.pid]}
        time.sleep(2)
        idle0 = {k: cpu_seconds(f()) for k, f in roles.items()}
        time.sleep(5)
        idle = {k: (cpu_seconds(f()) - idle0[k]) / 5 for k, f in roles.items()}  # CPU seconds per second, no load
        for rate in rates:
            gen.set_rate(rate)
            end = time.monotonic() + args.warmup
            while time.monotonic() < end:
                gen.poll(0.2)
            th0 = _threads(conn.pid)
            c0, n0, t0, g0 = ({k: cpu_seconds(f()) for k, f in roles.items()}, _raw_offsets(cons, topics.TELEMETRY_RAW.name),
                              time.monotonic(), gen.stats.sent)
            spy = None
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(conn.pid),
                                        "-d", str(int(args.seconds)), "-r", "50", "-f", "speedscope",
                                        "-o", str(args.profile / f"connector-{int(rate)}.json")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = t0 + args.seconds
            while time.monotonic() < end:
                gen.poll(0.2)
            took_s = time.monotonic() - t0
            c1, n1 = {k: cpu_seconds(f()) for k, f in roles.items()}, _raw_offsets(cons, topics.TELEMETRY_RAW.name)
            th1 = _threads(conn.pid)
            if spy:
                spy.wait(30)
            msgs = max(1, n1 - n0)
            row = {"offered": rate, "sent_per_s": round((gen.stats.sent - g0) / took_s),
                   "accepted_per_s": round(msgs / took_s),
                   "cpu_us_per_msg": {k: round((c1[k] - c0[k]) * 1e6 / msgs, 1) for k in roles},
                   "cpu_us_per_msg_minus_idle": {k: round((c1[k] - c0[k] - idle[k] * took_s) * 1e6 / msgs, 1)
                                                 for k in roles},
                   "cpu_pct": {k: round((c1[k] - c0[k]) * 100 / took_s) for k in roles},
                   "connector_threads_pct": {k: round((v - th0.get(k, 0.0)) * 100 / took_s, 1)
                                             for k, v in th1.items() if v - th0.get(k, 0.0) > 0.01 * took_s},
                   "load_avg": [round(x, 1) for x in psutil.getloadavg()]}
            results.append(row)
            print(json.dumps(row), flush=True)
        gen.set_rate(0)
        cons.close()
    finally:
        if gen is not None:
            gen.stop()
        stack.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
