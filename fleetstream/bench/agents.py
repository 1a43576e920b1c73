"""Measures the stream agents on this machine (``python -m fleetstream.bench.agents``; not a test).

1. Rule evaluations/s of the pure evaluator (one core, in-process): a tenant with a mix of rules.
2. Telemetry records/s through the real agents: a private stack (Kafka + one streams worker) on offset
   ports; N readings are produced to ``fleetstream.telemetry.raw`` for devices of one tenant with rules,
   and the script times how long until all N are on ``fleetstream.telemetry`` (validate agent) and all
   N × rules have been evaluated (rules agent, from the worker's ``/stats/`` page).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition

from runtime.kafka import KafkaClients
from runtime.settings import Settings
from schemas import codec, device_key, topics
from schemas.rules import evaluate

RULES = [
    {"type": "threshold", "metric": "temperature", "op": ">", "value": 90},
    {"type": "range", "metric": "pressure", "min": 1, "max": 5},
    {"type": "for", "for_s": 30, "condition": {"type": "threshold", "metric": "temperature", "op": ">", "value": 80}},
    {"type": "rate", "metric": "temperature", "op": ">", "value": 2, "per_s": 1},
    {"type": "geofence", "center": [52.52, 13.405], "radius_m": 5000},
    {"type": "all", "conditions": [{"type": "threshold", "metric": "temperature", "op": ">", "value": 70},
                                   {"type": "threshold", "metric": "pressure", "op": "<", "value": 2}]},
]


def bench_evaluator(n: int) -> float:
    states = [{} for _ in RULES]
    t0 = time.perf_counter()
    for i in range(n):
        values = {"temperature": 60.0 + (i % 40), "pressure": 1.0 + (i % 5), "lat": 52.52, "lon": 13.4}
        for cond, st in zip(RULES, states, strict=True):
            evaluate(cond, values, i * 1000, st)
    return n * len(RULES) / (time.perf_counter() - t0)


def bench_agents(n: int, devices: int, port_offset: int) -> dict:
    from fleetstream.stack.supervisor import Stack

    root = Path(tempfile.mkdtemp(prefix="fleetstream-bench-streams-"))
    s = Settings(data_dir=root, kafka_port=19092 + port_offset, kafka_controller_port=19093 + port_offset,
                 mqtt_tls_port=18883 + port_offset, postgres_port=15432 + port_offset,
                 gateway_port=18080 + port_offset, schema_registry_port=18081 + port_offset,
                 streams_web_port=18090 + port_offset)
    stack = Stack(s)
    try:
        stack.start_infra()
        stack.start_platform(roles=("streams",))
        tenant = str(uuid.uuid4())
        p = s.kafka.producer({"linger.ms": 5, "batch.num.messages": 10000, "compression.type": "lz4"})
        now = int(time.time() * 1000)
        for d in range(devices):
            entry = {"tenant_id": tenant, "device_id": f"d{d}", "status": "active", "device_type": "probe",
                     "tags": ["bench"], "attributes": {}, "jwt_public_keys": [], "version": 1, "time": now}
            p.produce(topics.REGISTRY.name, codec("registry_entry").encode(entry), device_key(tenant, f"d{d}"))
        for i, cond in enumerate(RULES):
            doc = {"tenant_id": tenant, "rule_id": f"r{i}", "version": 1, "enabled": True,
                   "document_json": json.dumps({"name": f"r{i}", "condition": cond, "actions": [{"type": "alert"}]})}
            p.produce(topics.RULES.name, codec("rule_entry").encode(doc), f"{tenant}:r{i}".encode())
        p.flush(30)
        stats_url = f"http://{s.host}:{s.streams_web_port}/stats/"
        _wait(lambda: _get(f"http://{s.host}:{s.streams_web_port}/rules/{tenant}/", s).keys() >= {f"r{i}" for i in range(len(RULES))})
        base = _get(stats_url, s)["rules"]["evaluations"]
        tc = codec("telemetry")
        payloads = []
        for i in range(n):
            d = f"d{i % devices}"
            rec = {"tenant_id": tenant, "device_id": d, "event_time": now + i, "receive_time": now + i, "protocol": "mqtt",
                   "values": {"temperature": 60.0 + (i % 40), "pressure": 1.0 + (i % 5), "lat": 52.52, "lon": 13.4},
                   "device_type": None, "tags": []}
            payloads.append((tc.encode(rec), device_key(tenant, d)))
        end_offsets = _end_offsets(s.kafka, topics.TELEMETRY.name)
        t0 = time.perf_counter()
        for value, key in payloads:
            while True:
                try:
                    p.produce(topics.TELEMETRY_RAW.name, value, key)
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(60)
        produced = time.perf_counter() - t0
        _wait(lambda: _count_since(s.kafka, topics.TELEMETRY.name, end_offsets) >= n,
          timeout=float(os.environ.get("FLEETSTREAM_BENCH_TIMEOUT", "600")))
        validated = time.perf_counter() - t0
        _wait(lambda: _get(stats_url, s)["rules"]["evaluations"] - base >= n * len(RULES), timeout=600)
        evaluated = time.perf_counter() - t0
        return {"records": n, "devices": devices, "rules": len(RULES), "produce_s": round(produced, 2),
                "validate_records_per_s": round(n / validated), "rules_records_per_s": round(n / evaluated),
                "rule_evaluations_per_s": round(n * len(RULES) / evaluated)}
    finally:
        if os.environ.get("FLEETSTREAM_BENCH_KEEP"):
            time.sleep(float(os.environ["FLEETSTREAM_BENCH_KEEP"]))  # inspect a stuck run (py-spy dump)
        stack.stop()


def _get(url: str, s: Settings) -> dict:
    from streams.app import web_auth_headers

    with urllib.request.urlopen(urllib.request.Request(url, headers=web_auth_headers(s)), timeout=5) as r:
        return json.loads(r.read())


def _wait(fn, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fn():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("benchmark step did not finish")


def _end_offsets(kafka: KafkaClients, topic: str) -> dict[int, int]:
    c = kafka.consumer("bench-offsets")
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
    finally:
        c.close()


def _count_since(kafka: KafkaClients, topic: str, start: dict[int, int]) -> int:
    return sum(hi - start.get(p, 0) for p, hi in _end_offsets(kafka, topic).items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--port-offset", type=int, default=300)
    ap.add_argument("--evaluator-only", action="store_true")
    a = ap.parse_args()
    out = {"evaluator_rule_evaluations_per_s": round(bench_evaluator(100_000))}
    if not a.evaluator_only:
        out.update(bench_agents(a.records, a.devices, a.port_offset))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
