"""The local stack: infrastructure (Kafka, Mosquitto, Postgres) and the platform's own processes,
started in dependency order, health-checked, and stopped in reverse (adr/0005 for the topology)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

from fleetstream.settings import Settings

from . import kafka, mosquitto, postgres
from .pki import PlatformPKI
from .process import Child, port_open

log = logging.getLogger("fleetstream.stack")

PLATFORM_ROLES = ("gateway", "streams", "connector-mqtt")


def settings_env(s: Settings) -> dict[str, str]:
    env = {f"FLEETSTREAM_{k.upper()}": str(v) for k, v in s.model_dump().items() if v is not None}
    env["FLEETSTREAM_DATA_DIR"] = str(s.root)
    return env


class Stack:
    def __init__(self, s: Settings):
        self.s = s
        self.pki = PlatformPKI(s.pki_dir)
        self.children: list[Child] = []
        self.timings: dict[str, float] = {}

    @property
    def state_file(self) -> Path:
        return self.s.root / "stack.json"

    # -- infrastructure -------------------------------------------------------------------------------
    def start_infra(self) -> None:
        s = self.s
        s.logs_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.pki.ensure(broker_sans=sorted({"localhost", "127.0.0.1", s.host, s.public_host}))
        pg = self._spawn(postgres.postgres_child(s))
        mq = self._spawn(mosquitto.mosquitto_child(s, self.pki))
        kf = self._spawn(kafka.kafka_child(s))
        pg.wait_until(lambda: port_open(s.host, s.postgres_port) and postgres.postgres_ready(
            postgres.maintenance_dsn(s)), 30, "postgres accepting connections")
        postgres.ensure_database(s)
        from gateway.db.migrate import migrate

        migrate(s.owner_dsn, s.postgres_app_password)
        self.timings["postgres"] = time.monotonic() - t0
        mq.wait_until(lambda: port_open(s.host, s.mqtt_tls_port) and mosquitto.mqtt_ready(s, self.pki), 15,
                      "mosquitto mTLS CONNECT")
        self.timings["mosquitto"] = time.monotonic() - t0
        kf.wait_until(lambda: port_open(s.host, s.kafka_port) and kafka.kafka_ready(s.bootstrap_servers), 90,
                      "kafka metadata")
        kafka.ensure_topics(s.bootstrap_servers, s.kafka_partitions)
        self.timings["kafka"] = time.monotonic() - t0

    # -- platform -------------------------------------------------------------------------------------
    def platform_child(self, role: str, extra_args: list[str] | None = None) -> Child:
        argv = [sys.executable, "-m", "fleetstream.cli"]
        if role.startswith("connector-"):
            argv += ["connector", "run", role.removeprefix("connector-")]
        else:
            argv += ["run", role]
        return Child(role, argv + (extra_args or []), self.s.logs_dir / f"{role}.log", env=settings_env(self.s))

    def start_platform(self, roles=PLATFORM_ROLES) -> None:
        t0 = time.monotonic()
        if not self.s.clickhouse_embedded and "gateway" in roles:  # a server: the sink is its own role (adr/0061)
            roles = (*roles, "sink")
        started = {role: self._spawn(self.platform_child(role)) for role in roles}
        if "gateway" in started:
            started["gateway"].wait_until(lambda: _http_ok(f"http://{self.s.host}:{self.s.gateway_port}/readyz"),
                                          90, "gateway /readyz")
        if "streams" in started:
            started["streams"].wait_until(lambda: port_open(self.s.host, self.s.streams_web_port), 90,
                                          "streams worker web port")
        self.timings["platform"] = time.monotonic() - t0

    def _spawn(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.state_file.unlink(missing_ok=True)

    def write_state(self) -> None:
        self.state_file.write_text(json.dumps({
            "supervisor_pid": os.getpid(),
            "children": {c.name: c.pid for c in self.children},
            "settings": settings_env(self.s),
        }, indent=2))

    def watch(self, stop: threading.Event) -> None:
        """Keeps platform processes running until ``stop`` is set: restarts one that died, with backoff."""
        backoff: dict[str, float] = {}
        while not stop.wait(0.5):
            for i, child in enumerate(self.children):
                restartable = child.name in (*PLATFORM_ROLES, "sink") or child.name.startswith("simulator")
                if child.alive() or not restartable:
                    continue
                wait = backoff.get(child.name, 1.0)
                log.warning("%s exited (code %s); restarting in %.0fs. Log: %s", child.name,
                            child.proc.returncode if child.proc else "?", wait, child.log)
                if stop.wait(wait):
                    return
                backoff[child.name] = min(wait * 2, 30)
                fresh = Child(child.name, child.argv, child.log, env=child.env)
                fresh.start()
                self.children[i] = fresh
                self.write_state()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


def read_state(s: Settings) -> dict | None:
    try:
        return json.loads((s.root / "stack.json").read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_running(s: Settings, timeout: float = 40) -> bool:
    state = read_state(s)
    if not state:
        return False
    pid = state["supervisor_pid"]
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    for child_pid in state.get("children", {}).values():  # a supervisor killed hard leaves its children
        if pid_alive(child_pid):
            try:
                os.killpg(child_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    (s.root / "stack.json").unlink(missing_ok=True)
    return True
