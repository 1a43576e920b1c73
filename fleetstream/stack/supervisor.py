"""The local stack: infrastructure (Kafka, Mosquitto, Postgres, the Schema Registry) and the platform's own
processes, started in dependency order, health-checked, and stopped in reverse (adr/0005 for the topology)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runtime.pki import PlatformPKI, write_private
from runtime.schema_registry import bind as bind_schema_ids
from runtime.settings import Settings

from . import kafka, mosquitto, postgres, schema_registry
from .process import Child, port_open

log = logging.getLogger("fleetstream.stack")

PLATFORM_ROLES = ("gateway", "streams", "connector-mqtt")


@dataclass
class RestartPolicy:
    """How the supervisor brings children back (adr/0111)."""
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0  # a child that ran this long before dying starts over at first_delay_s
    liveness_every_s: float = 5.0
    liveness_failures: int = 3  # consecutive failed checks before a live process is restarted
    liveness_grace_s: float = 90.0  # start-up time before liveness counts


def settings_env(s: Settings, *, secrets: bool = True) -> dict[str, str]:
    """The settings as ``FLEETSTREAM_*`` variables for a child; ``secrets=False`` leaves out every secret
    setting (what may be written to a file)."""
    hidden = set() if secrets else Settings.secret_fields()
    # dicts and lists as JSON, which is how pydantic-settings reads them back (str() would give Python's repr)
    env = {f"FLEETSTREAM_{k.upper()}": json.dumps(v) if isinstance(v, dict | list) else str(v)
           for k, v in s.model_dump().items() if v is not None and k not in hidden}
    env["FLEETSTREAM_DATA_DIR"] = str(s.root)
    return env


def prepare_data_dir(s: Settings) -> None:
    """The data dir is the stack owner's alone (0700): keys, passwords and tenant data live under it. When
    PostgreSQL runs as its own system user, that user's group may pass through (0710) to reach its folder."""
    s.root.mkdir(parents=True, exist_ok=True)
    group = postgres.server_group()
    if group is None:
        os.chmod(s.root, 0o700)
    else:
        shutil.chown(s.root, group=group)
        os.chmod(s.root, 0o710)


class Stack:
    def __init__(self, s: Settings):
        if not s.streams_web_token:
            # the streams worker's web port answers only with this token (adr/0112); a new one per stack. Set
            # on the caller's settings object too, so whoever holds it (tests, the benchmark) can use the port.
            s.streams_web_token = secrets.token_urlsafe(24)
        self.s = s
        self.pki = PlatformPKI(s.pki_dir)
        self.children: list[Child] = []
        self.timings: dict[str, float] = {}
        self.policy = RestartPolicy()
        self.events: list[dict] = []  # died/hung/restarted, for the chaos report and the log
        self._backoff: dict[str, float] = {}
        self._restart_due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._checked_at: dict[str, float] = {}

    @property
    def state_file(self) -> Path:
        return self.s.root / "stack.json"

    # -- infrastructure -------------------------------------------------------------------------------
    def start_infra(self) -> None:
        s = self.s
        prepare_data_dir(s)
        s.logs_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.pki.ensure(broker_sans=sorted({"localhost", "127.0.0.1", s.host, s.public_host}))
        pg = self._spawn(postgres.postgres_child(s))
        mq = self._spawn(mosquitto.mosquitto_child(s, self.pki))
        kf = self._spawn(kafka.kafka_child(s))
        sr = None if s.schema_registry_url else self._spawn(schema_registry.registry_child(s))
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
        if sr is not None:
            sr.wait_until(lambda: schema_registry.registry_ready(s), 120, "schema registry API")
        # registered here once, so the platform's processes find them; this process may encode too (tests,
        # benchmarks), so it binds the ids as they do
        bind_schema_ids(s, wait_s=30)
        self.timings["schema-registry"] = time.monotonic() - t0

    # -- platform -------------------------------------------------------------------------------------
    def platform_child(self, role: str, extra_args: list[str] | None = None) -> Child:
        argv = [sys.executable, "-m", "fleetstream.cli"]
        if role == "connector-mqtt" and not extra_args:
            argv += ["connector", "run", "mqtt", "--config", str(self._single_connector_config())]
        elif role.startswith("connector-"):
            argv += ["connector", "run", role.removeprefix("connector-")]
        else:
            argv += ["run", role]
        child = Child(role, argv + (extra_args or []), self.s.logs_dir / f"{role}.log", env=settings_env(self.s))
        if role == "gateway":  # /healthz fails when a thread the process cannot do without has died
            child.liveness = lambda: _http_ok(f"http://{self.s.host}:{self.s.gateway_port}/healthz")
        return child

    def _single_connector_config(self) -> Path:
        """The local stack runs one MQTT connector: a plain subscription, which Mosquitto restores from its
        store after being killed, where a shared one is lost until the connector subscribes again (adr/0111)."""
        path = self.s.root / "connectors" / "mqtt.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# written by the fleetstream supervisor (adr/0111)\nsite_id: mqtt\nshare_group: ''\n"
                        "sparkplug_host_id: fleetstream\n")  # the one instance is the Sparkplug host (adr/0155)
        return path

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
        """``stack.json`` for `status` and `down`: pids and the settings without any secret, 0600."""
        tmp = self.state_file.with_suffix(".tmp")
        write_private(tmp, json.dumps({
            "supervisor_pid": os.getpid(),
            "children": {c.name: c.pid for c in self.children},
            "settings": settings_env(self.s, secrets=False),
        }, indent=2).encode())
        tmp.replace(self.state_file)

    def watch(self, stop: threading.Event) -> None:
        """Keeps every child running until ``stop`` is set (adr/0111): one that exited, infrastructure
        included, or a role whose liveness check keeps failing, is restarted with backoff."""
        while not stop.wait(0.5):
            self.check_children()

    def check_children(self) -> None:
        now = time.monotonic()
        for i, child in enumerate(self.children):
            if child.alive() and not self._hung(child, now):
                continue
            due = self._restart_due.get(child.name)
            if due is None:  # just noticed: schedule the restart
                up_for = now - child.started_at
                wait = self.policy.first_delay_s if up_for >= self.policy.stable_after_s else \
                    min(self.policy.max_delay_s, self._backoff.get(child.name, self.policy.first_delay_s / 2) * 2)
                self._backoff[child.name] = wait
                self._restart_due[child.name] = now + wait
                code = child.proc.returncode if child.proc else None
                self.events.append({"component": child.name, "event": "died" if code is not None else "hung",
                                    "exit_code": code, "at": time.time(), "restart_in_s": round(wait, 2)})
                log.warning("%s %s (code %s) after %.0fs up; restarting in %.1fs. Log: %s", child.name,
                            "exited" if code is not None else "stopped answering", code, up_for, wait, child.log)
                continue
            if now < due:
                continue
            del self._restart_due[child.name]
            if child.alive():  # hung: a live process that fails its liveness check
                child.stop(timeout=5)
            child.kill_leftovers()
            fresh = child.respawn()
            try:
                fresh.start()
            except OSError as exc:
                log.error("could not restart %s: %s", child.name, exc)
                self._restart_due[child.name] = now + self.policy.max_delay_s
                continue
            self.children[i] = fresh
            self._failures.pop(child.name, None)
            self.events.append({"component": child.name, "event": "restarted", "at": time.time()})
            log.warning("%s restarted (pid %s)", child.name, fresh.pid)
            self.write_state()

    def _hung(self, child: Child, now: float) -> bool:
        """A live process whose liveness check failed ``liveness_failures`` times in a row, checked every
        ``liveness_every_s`` once it has been up for ``liveness_grace_s``."""
        if child.liveness is None or now - child.started_at < self.policy.liveness_grace_s:
            return False
        if now - self._checked_at.get(child.name, 0.0) < self.policy.liveness_every_s:
            return self._failures.get(child.name, 0) >= self.policy.liveness_failures
        self._checked_at[child.name] = now
        try:
            ok = child.liveness()
        except Exception:
            ok = False
        self._failures[child.name] = 0 if ok else self._failures.get(child.name, 0) + 1
        return self._failures[child.name] >= self.policy.liveness_failures


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
