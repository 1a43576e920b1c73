"""Micro-benchmark of the MQTT connector's per-message Python work (adr/0215): one burst of PUBLISHes through
``MqttConnector._on_batch`` (topic, canonical parse, admission with the registry and the rate limiter,
Telemetry encoding, the ``Batch``), with librdkafka's ``produce`` replaced by a stub that confirms nothing:
what is timed is this process's Python, not Kafka's client.

``PYTHONPATH=<tree> python scripts/connector_bench.py`` measures any commit since adr/0214. Prints CPU µs per
message (this thread's ``time.thread_time``, the best of ``--repeat`` bursts), once while a start-up stall
credit is live (the first minute after a connector resumes its session, adr/0104) and once without.
"""

from __future__ import annotations

import argparse
import json
import time

N = 1000  # messages per burst (a bench burst is 5–50; more here to time a steady loop, not set-up)


class _Producer:
    def produce(self, *a, **kw) -> None:
        pass

    def poll(self, timeout: float = 0) -> int:
        time.sleep(timeout)
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from schemas.codec import bind_local_ids
    bind_local_ids()
    from connectors import uplink as uplink_mod
    from connectors.base import Admission
    from connectors.mqtt.connector import MqttConnector
    from connectors.mqtt.settings import MqttSettings
    from connectors.ratelimit import TokenBuckets

    kafka = type("K", (), {"producer": lambda self, *a, **kw: _Producer()})()
    uplink_mod.clients = lambda k: k  # the stub stands in for the process's Kafka clients
    up = uplink_mod.UplinkPublisher(kafka, "mqtt")

    class _Registry:
        entry = {"status": "active"}

        def get(self, tenant, device):
            return self.entry

    now = int(time.time() * 1000)
    msgs = [(f"fs/tenant-{i % 7:02d}-0000-0000-0000-000000000000/device-{i % 200:05d}/telemetry", 1, i % 65535 + 1,
             json.dumps({"ts": now - 5, "values": {"voltage": 229.5 + i % 10, "power_w": 81.0,
                                                   "energy_kwh": 0.125 * i}}).encode(), False)
            for i in range(N)]
    out = {}
    for case, stall in (("steady", False), ("stall credit live (first minute after a resumed session)", True)):
        limiter = TokenBuckets(1e9, 1e9)
        conn = MqttConnector(up, MqttSettings(), Admission(_Registry(), limiter, require_registered=False))
        conn.subscriber.ack = lambda generation, acks: None
        conn._on_batch(0, msgs)  # topic cache and buckets warm, as in a running connector
        if stall:
            limiter.stalled(limiter.clock() - 60, limiter.clock())
            conn._on_batch(0, msgs)
        best = min(timeit_cpu(lambda c=conn: c._on_batch(0, msgs)) for _ in range(args.repeat))
        out[f"MqttConnector._on_batch per message, {case}"] = best / N * 1e6
    # the limiter alone: 1,000 takes over 200 devices, each refilled after the stall (the steady state of the
    # minutes a credit stays live)
    keys = [f"tenant-{i % 7:02d}:device-{i % 200:05d}" for i in range(N)]
    for case, stall in (("steady", False), ("stall credit live", True)):
        limiter = TokenBuckets(1e9, 1e9)
        for k in keys:
            limiter.take(k, 3)
        if stall:
            limiter.stalled(limiter.clock() - 60, limiter.clock())
            for k in keys:
                limiter.take(k, 3)
        take = limiter.take
        best = min(timeit_cpu(lambda t=take: [t(k, 3) for k in keys]) for _ in range(args.repeat))
        out[f"TokenBuckets.take, {case}"] = best / N * 1e6
    up._stop.set()
    if args.json:
        print(json.dumps(out))
    else:
        for name, us in out.items():
            print(f"{us:8.3f} µs  {name}")


def timeit_cpu(fn) -> float:
    t = time.thread_time()
    fn()
    return time.thread_time() - t


if __name__ == "__main__":
    main()
