"""MQTT test helpers: connector processes (the real ``fleetstream connector run mqtt`` in its own process
group, with its own client id and share group so its records are told apart by their ``fs-instance``
header) and device publishers that count what the broker acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from connectors.mqtt.namespace import device_topics
from fleetstream.settings import Settings
from fleetstream.stack.supervisor import settings_env


def start_connector(settings: Settings, workdir: Path, client_id: str, group: str, *,
                    kafka: str | None = None, rate_limit: str = "{per_second: 10000, burst: 10000}",
                    receive_maximum: int = 1000) -> subprocess.Popen:
    cfg = workdir / f"{client_id}.yaml"
    cfg.write_text(f"client_id: {client_id}\nshare_group: {group}\nreceive_maximum: {receive_maximum}\n"
                   f"rate_limit: {rate_limit}\n")
    env = {**os.environ, **settings_env(settings), "FLEETSTREAM_METRICS_PORT": "0"}  # several on one host
    if kafka:
        env["FLEETSTREAM_KAFKA_BOOTSTRAP"] = kafka
    log = open(workdir / f"{client_id}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "fleetstream.cli", "connector", "run", "mqtt", "--config",
                             str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def subscriptions(workdir: Path, client_id: str) -> int:
    """How many times connectors with this client id have subscribed (their log is appended to)."""
    log = workdir / f"{client_id}.log"
    return log.read_text(errors="replace").count(f"as {client_id}, subscribed") if log.exists() else 0


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


class Publisher:
    """A device's paho client that counts the QoS1 publishes the broker acknowledged with success."""

    def __init__(self, factory, device, protocol, *, inflight: int = 100):
        self.acked: set[int] = set()
        self.mids: dict[int, int] = {}  # paho message id → our sequence number
        self.lock = threading.Lock()
        self.client = factory.mqtt_client(device, protocol=protocol, connect=False)
        self.client.max_inflight_messages_set(inflight)
        self.client.on_publish = self._on_publish
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect(factory.s.mqtt_broker_host, factory.s.mqtt_tls_port, keepalive=30)
        self.client.loop_start()
        assert connected.wait(10), "device could not connect"
        self.device, self.topic = device, device_topics(device.tenant_id, device.device_id)["telemetry"]

    def _on_publish(self, _c, _u, mid, reason_code, _props) -> None:
        with self.lock:
            if not getattr(reason_code, "is_failure", False):
                self.acked.add(mid)

    def publish(self, seq: int, payload: bytes) -> None:
        info = self.client.publish(self.topic, payload, qos=1)
        with self.lock:
            self.mids[info.mid] = seq

    def acked_seqs(self) -> set[int]:
        with self.lock:
            return {self.mids[m] for m in self.acked if m in self.mids}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
