"""MQTT test helpers: connector processes (the real ``fleetstream connector run mqtt`` in its own process
group, with its own client id and share group so its records are told apart by their ``fs-instance``
header) and device publishers that count what the broker acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fleetstream.stack.supervisor import settings_env
from runtime.observability import ROLE_PORT_OFFSETS
from runtime.settings import Settings
from schemas.namespace import device_topics


def start_connector(settings: Settings, workdir: Path, client_id: str, group: str, *,
                    kafka: str | None = None, rate_limit: str = "{per_second: 10000, burst: 10000}",
                    receive_maximum: int = 1000, metrics_port: int = 0) -> subprocess.Popen:
    """``metrics_port``: where the process serves /metrics (0: nowhere; several connectors share the host)."""
    cfg = workdir / f"{client_id}.yaml"
    cfg.write_text(f"client_id: {client_id}\nshare_group: {group}\nreceive_maximum: {receive_maximum}\n"
                   f"rate_limit: {rate_limit}\n")
    base = metrics_port - ROLE_PORT_OFFSETS["connector-mqtt"] if metrics_port else 0
    env = {**os.environ, **settings_env(settings), "FLEETSTREAM_METRICS_PORT": str(base)}
    if kafka:
        env["FLEETSTREAM_KAFKA_BOOTSTRAP"] = kafka
    log = open(workdir / f"{client_id}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "fleetstream.cli", "connector", "run", "mqtt", "--config",
                             str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def ingested(host: str, metrics_port: int, tenant_id: str) -> float:
    """Readings of ``tenant_id`` a connector has taken from the broker and handed to its Kafka producer
    (``fleetstream_ingest_messages_total``, counted before Kafka confirms them); 0 while /metrics is not up."""
    try:
        with urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "fleetstream_ingest_messages_total" and s.labels.get("tenant") == tenant_id)


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
