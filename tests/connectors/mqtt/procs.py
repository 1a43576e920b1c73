"""MQTT connector processes for tests: the real ``fleetstream connector run mqtt`` in its own process group,
with its own client id and share group so its records are told apart by their ``fs-instance`` header."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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
