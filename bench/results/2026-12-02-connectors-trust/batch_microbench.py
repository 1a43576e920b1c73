"""CPU µs per message of the MQTT connector's batch path (parse, admit, encode, produce), in-process.

Run with PYTHONPATH pointing at the tree to measure; the producer points at no broker (records queue).
"""

import inspect
import json
import os
import time

from connectors.base import Admission
from connectors.mqtt.connector import MqttConnector
from connectors.mqtt.settings import MqttSettings
from connectors.ratelimit import TokenBuckets
from connectors.uplink import UplinkPublisher

up = UplinkPublisher("127.0.0.1:1", "mqtt", extra_config={
    "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 4_000_000,
    "message.timeout.ms": 600_000, "log_level": 0})
conn = MqttConnector(up, MqttSettings(), Admission(None, TokenBuckets(1e9, 1e9), require_registered=False))
conn.subscriber.ack = lambda *a: None
five = "dup" in inspect.getsource(MqttConnector._on_batch)  # the branch's messages carry the DUP flag
now = int(time.time() * 1000)
msgs = []
for i in range(100):
    payload = json.dumps({"ts": now, "values": {"voltage": 230.1 + i, "current": 5.2, "power": 1196.5}}).encode()
    m = (f"fs/tenant-{i % 7}/dev-{i}/telemetry", 1, i + 1, payload)
    msgs.append((*m, False) if five else m)
for _ in range(50):
    conn._on_batch(1, msgs)  # warm the caches
runs = []
for _ in range(7):
    t0 = time.process_time()
    for _ in range(200):
        conn._on_batch(1, msgs)
    runs.append((time.process_time() - t0) / (200 * 100) * 1e6)
print(f"{'after' if five else 'baseline'}: µs/msg min {min(runs):.2f} median {sorted(runs)[3]:.2f}", flush=True)
os._exit(0)  # the producer holds undeliverable records: do not wait for it
