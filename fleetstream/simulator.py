"""A small simulated fleet: one MQTT 5 connection per device (its own certificate), readings spread
evenly in time. The benchmark issue grows this into the full load generator."""

from __future__ import annotations

import json
import math
import random
import signal
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from connectors.mqtt.namespace import device_topics


class SimulatedDevice:
    def __init__(self, tenant_id: str, device_id: str, cert_dir: Path, host: str, port: int, qos: int = 1):
        self.tenant_id, self.device_id, self.qos = tenant_id, device_id, qos
        self.topic = device_topics(tenant_id, device_id)["telemetry"]
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert_dir / "ca.crt"))
        ctx.load_cert_chain(str(cert_dir / "device.crt"), str(cert_dir / "device.key"))
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{tenant_id}.{device_id}", protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        c.connect_async(host, port, keepalive=60)
        self.client = c
        self.phase = random.random() * math.tau

    def reading(self, now_ms: int) -> dict:
        t = now_ms / 60000 + self.phase
        return {"ts": now_ms, "values": {"temperature": round(21 + 4 * math.sin(t), 2),
                                          "humidity": round(45 + 10 * math.cos(t), 2),
                                          "power_w": round(random.uniform(80, 120), 1)}}

    def publish(self, now_ms: int) -> None:
        self.client.publish(self.topic, json.dumps(self.reading(now_ms)), qos=self.qos)


def run_fleet(fleet_file: Path, host: str, port: int, interval_s: float = 1.0, duration_s: float | None = None) -> int:
    """Reads ``fleet.json`` (tenant, devices with their certificate folders) and publishes until stopped."""
    fleet = json.loads(fleet_file.read_text())
    devices = [SimulatedDevice(fleet["tenant_id"], d["device_id"], Path(d["cert_dir"]), host, port)
               for d in fleet["devices"]]
    for d in devices:
        d.client.loop_start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sent, start = 0, time.monotonic()
    step = interval_s / max(1, len(devices))
    try:
        while not stop.is_set() and (duration_s is None or time.monotonic() - start < duration_s):
            for d in devices:
                if d.client.is_connected():
                    d.publish(time.time_ns() // 1_000_000)
                    sent += 1
                if stop.wait(step):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        for d in devices:
            d.client.disconnect()
            d.client.loop_stop()
    return sent
