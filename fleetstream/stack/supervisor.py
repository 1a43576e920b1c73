"""The local stack: infrastructure (Kafka, Mosquitto, Postgres, the Schema Registry), started side by side
(adr/0199), then the platform's own processes; each health-checked before the next stage, stopped in reverse
(adr/0005 for the topology)."""

from __future__ import annotations

import contextlib
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
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from runtime.pki import PlatformPKI, write_private
from runtime.schema_registry import bind as bind_schema_ids
from runtime.schema_registry import handed_ids
from runtime.settings import Settings

from . import kafka, mosquitto, ports, postgres, schema_registry
from .process import Child, StartupCancelled, port_open

log = logging.getLogger("fleetstream.stack")

# the CoAP connector listens on UDP settings.coap_port only (its metrics on metrics_port + 5; adr/0184)
PLATFORM_ROLES = ("gateway", "streams", "connector-mqtt", "connector-coap")
# what an MQTT fleet's readings pass through from device to query: a stack for such load alone (tests, tiny
# benchmarks) need not wait for the CoAP connector
MQTT_ROLES = ("gateway", "streams", "connector-mqtt")
# roles the local stack can run several of (adr/0134); "mqtt" is accepted for connector-mqtt
REPLICATED_ROLES = ("gateway", "streams", "connector-mqtt")
# replica i of a role listens on its base port + i * this (gateway 18080 → 18180, streams web 18090 → 18190):
# +1 would land on the next service's port (the gateway's 18080 + 1 is the Schema Registry's 18081)
REPLICA_PORT_STRIDE = 100
# the MQTT connector replicas' share group and client ids; never the single connector's client id
# (fleetstream-connector-0), whose persistent session holds a plain subscription that would deliver
# every reading to that replica a second time
SHARE_GROUP = "fleetstream"
SHARED_CONNECTOR_ID = "fleetstream-connector-shared-{i}"


@dataclass
class RestartPolicy:
    """How the supervisor brings children back (adr/0111)."""
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0  # a child that ran this long before dying starts over at first_delay_s
    liveness_every_s: float = 5.0
    liveness_failures: int = 3  # consecutive failed checks before a live process is restarted
    liveness_grace_s: float = 90.0  # start-up time before liveness counts


def parse_replicas(text: str | None) -> dict[str, int]:
    """``streams=2,mqtt=2,gateway=2`` → ``{"streams": 2, "connector-mqtt": 2, "gateway": 2}``."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        role, sep, count = part.partition("=")
        role = "connector-mqtt" if role.strip() == "mqtt" else role.strip()
        if not sep or role not in REPLICATED_ROLES or not count.strip().isdigit() or not 1 <= int(count) <= 9:
            raise ValueError(f"--replicas: {part!r} is not ROLE=N with ROLE one of "
                             f"{', '.join((*REPLICATED_ROLES, 'mqtt'))} and N from 1 to 9")
        out[role] = int(count)
    return out


def replica_name(role: str, i: int) -> str:
    """Replica 0 keeps the role's name (what `status`, the chaos run and the tests look up)."""
    return role if i == 0 else f"{role}.{i}"


def replica_port(base: int, i: int) -> int:
    return base + i * REPLICA_PORT_STRIDE


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
    """:param replicas: how many processes of each of ``REPLICATED_ROLES`` to run (default 1 each, adr/0134)."""

    def __init__(self, s: Settings, replicas: dict[str, int] | None = None):
        if not s.streams_web_token:
            # the streams worker's web port answers only with this token (adr/0112); a new one per stack. Set
            # on the caller's settings object too, so whoever holds it (tests, the benchmark) can use the port.
            s.streams_web_token = secrets.token_urlsafe(24)
        self.s = s
        kafka.cluster_settings(s)  # a local cluster's SCRAM user and RF/min ISR, before any child gets settings
        s.kafka_security_settings  # noqa: B018 - refuses settings that could not connect, or test-only ones
        self.replicas = {role: max(1, (replicas or {}).get(role, 1)) for role in REPLICATED_ROLES}
        self.pki = PlatformPKI(s.pki_dir)
        self.children: list[Child] = []
        self.timings: dict[str, float] = {}
        # (step, began, ended) in seconds since start_infra began: where a start-up's time goes
        self.steps: list[tuple[str, float, float]] = []
        self._t0 = time.monotonic()
        self._abort = threading.Event()  # set when one start-up chain failed: the others stop waiting
        self._spawning = threading.Lock()
        self.policy = RestartPolicy()
        self.events: list[dict] = []  # died/hung/restarted, for the chaos report and the log
        self._backoff: dict[str, float] = {}
        self._restart_due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._checked_at: dict[str, float] = {}
        self._handed_ids: dict[str, str] = {}  # the ids registered in start_infra, for the children (adr/0174)
        self._infra: set[str] = set()  # names of the infrastructure's children (stopped after the others)

    @contextlib.contextmanager
    def _step(self, name: str):
        began = time.monotonic() - self._t0
        yield
        self.steps.append((name, round(began, 2), round(time.monotonic() - self._t0, 2)))

    @property
    def state_file(self) -> Path:
        return self.s.root / "stack.json"

    # -- infrastructure -------------------------------------------------------------------------------
    def start_infra(self) -> None:
        """Postgres, Mosquitto, Kafka and the Schema Registry, each brought up by a chain of its own, the four
        side by side (adr/0199): none waits for another, so start-up takes its slowest chain, not the sum of
        the waits. Returns once every chain is ready; the first that fails ends the others' waits and is
        what is raised."""
        s = self.s
        ports.ensure_free(s.host, ports.infra_ports(s))
        prepare_data_dir(s)
        s.logs_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.monotonic()
        self._abort.clear()
        with self._step("pki"):
            self.pki.ensure(broker_sans=sorted({"localhost", "127.0.0.1", s.host, s.public_host}))
        # the registry's and Kafka's JVMs are the long chains: handed out first
        chains = (self._start_registry, self._start_kafka, self._start_postgres, self._start_mosquitto)
        pool = ThreadPoolExecutor(len(chains), thread_name_prefix="stack-start")
        futures = [pool.submit(chain) for chain in chains]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # a failure, or an interrupt of this thread, ends the other chains' waits at their next poll
            if not all(f.done() and f.exception() is None for f in futures):
                self._abort.set()
            pool.shutdown(wait=True)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise next((e for e in errors if not isinstance(e, StartupCancelled)), errors[0])

    def _start_postgres(self) -> None:
        s = self.s
        with self._step("postgres initdb + spawn"):
            pg = self._spawn(postgres.postgres_child(s), infra=True)
        with self._step("postgres ready"):
            self._wait(pg, lambda: port_open(s.host, s.postgres_port) and postgres.postgres_ready(
                postgres.maintenance_dsn(s)), 60, "postgres accepting connections")
        with self._step("postgres database + migrations"):
            postgres.ensure_database(s)
            from gateway.db.migrate import migrate

            migrate(s.owner_dsn, s.postgres_app_password)
        self.timings["postgres"] = time.monotonic() - self._t0

    def _start_mosquitto(self) -> None:
        s = self.s
        with self._step("mosquitto spawn"):
            mq = self._spawn(mosquitto.mosquitto_child(s, self.pki), infra=True)
        with self._step("mosquitto ready"):
            self._wait(mq, lambda: port_open(s.host, s.mqtt_tls_port) and mosquitto.mqtt_ready(s, self.pki), 30,
                       "mosquitto mTLS CONNECT")
        self.timings["mosquitto"] = time.monotonic() - self._t0

    def _start_kafka(self) -> None:
        s = self.s
        with self._step("kafka format + spawn"):
            kf = [self._spawn(child, infra=True) for child in kafka.kafka_children(s)]
        with self._step("kafka ready"):
            self._wait(kf[0], lambda: port_open(s.host, s.kafka_port) and kafka.kafka_ready(s.kafka, len(kf)),
                       max(240, 120 * len(kf)),  # JVMs starting at once on a busy 2-core machine took > 2 min
                       f"kafka metadata with {len(kf)} broker(s)")
        with self._step("kafka verify + topics"):
            s.kafka.verify()  # a wrong password fails here, in one line (adr/0130)
            kafka.ensure_topics(s.kafka, s.kafka_partitions)
        self.timings["kafka"] = time.monotonic() - self._t0

    def _start_registry(self) -> None:
        """The local registry keeps its schemas in its own H2 file, so it needs nothing else running; an
        external one (``schema_registry_url``) is only waited for."""
        s = self.s
        if not s.schema_registry_url:
            with self._step("registry spawn"):
                sr = self._spawn(schema_registry.registry_child(s), infra=True)
            with self._step("registry ready"):
                self._wait(sr, lambda: schema_registry.registry_ready(s), 240, "schema registry API")
        # registered here once; this process may encode too (tests, benchmarks), so it binds the ids as they do,
        # and hands them to the processes it starts, which bind them without registering again (adr/0174)
        with self._step("schemas registered"):
            self._handed_ids = handed_ids(s, bind_schema_ids(s, wait_s=30))
        self.timings["schema-registry"] = time.monotonic() - self._t0

    def _wait(self, child: Child, check, timeout: float, what: str) -> None:
        child.wait_until(check, timeout, what, cancel=self._abort)

    # -- platform -------------------------------------------------------------------------------------
    def child_env(self) -> dict[str, str]:
        """The environment of a platform process: the settings and the schema ids registered in start_infra,
        which it binds without asking the registry (adr/0174); for processes started by others too (tests)."""
        return {**settings_env(self.s), **self._handed_ids}

    def platform_child(self, role: str, extra_args: list[str] | None = None, replica: int = 0) -> Child:
        argv = [sys.executable, "-m", "fleetstream.cli"]
        if role == "connector-mqtt" and not extra_args:
            argv += ["connector", "run", "mqtt", "--config", str(self._connector_config(replica))]
        elif role.startswith("connector-"):
            argv += ["connector", "run", role.removeprefix("connector-")]
        else:
            argv += ["run", role]
        name = replica_name(role, replica)
        env = {**self.child_env(), **self.replica_env(role, replica)}
        child = Child(name, argv + (extra_args or []), self.s.logs_dir / f"{name}.log", env=env)
        if role == "gateway":  # /healthz fails when a thread the process cannot do without has died
            url = f"http://{self.s.host}:{replica_port(self.s.gateway_port, replica)}/healthz"
            child.liveness = lambda: _http_ok(url)
        return child

    def start_sites(self, sites: list[tuple[str, str, Path]]) -> None:
        """One connector process per site file (``fleetstream up --sites DIR``): ``(protocol, site_id, path)``,
        validated by the caller; supervised and restarted like the platform's roles."""
        for protocol, site_id, path in sites:
            name = f"site-{protocol}-{site_id}"
            argv = [sys.executable, "-m", "fleetstream.cli", "connector", "run", protocol, "--config", str(path)]
            self._spawn(Child(name, argv, self.s.logs_dir / f"{name}.log", env=self.child_env()))

    def replica_env(self, role: str, i: int) -> dict[str, str]:
        """What sets replica ``i`` apart from replica 0 (adr/0134): its own ports; a gateway replica with
        embedded ClickHouse also its own chdb store and sink groups, because chdb allows one process per data
        path: every replica's sink writes every point once into its own store, so any replica answers any
        query (a ClickHouse server is shared instead, its sink a role of its own)."""
        s, env = self.s, {}
        if i == 0:
            return env
        if role == "gateway":
            env["FLEETSTREAM_GATEWAY_PORT"] = str(replica_port(s.gateway_port, i))
            if s.clickhouse_embedded:
                env["FLEETSTREAM_CLICKHOUSE_DSN"] = f"{s.chdb_dsn}-{i}"
                env["FLEETSTREAM_SINK_GROUP_PREFIX"] = f"{s.sink_group_prefix}-{i}"
        elif role == "streams":
            env["FLEETSTREAM_STREAMS_WEB_PORT"] = str(replica_port(s.streams_web_port, i))
        if s.metrics_port:
            env["FLEETSTREAM_METRICS_PORT"] = str(replica_port(s.metrics_port, i))
        return env

    def gateway_urls(self) -> list[str]:
        return [f"http://{self.s.host}:{replica_port(self.s.gateway_port, i)}"
                for i in range(self.replicas["gateway"])]

    def _connector_config(self, replica: int) -> Path:
        """One MQTT connector subscribes plainly: Mosquitto restores a plain subscription from its store after
        being killed, where a shared one is lost until the connector subscribes again (adr/0111). Several
        share the load through one shared subscription (``$share/fleetstream/...``), each with a client id
        of its own whose persistent session keeps what it had not acknowledged when it died (adr/0134)."""
        folder = self.s.root / "connectors"
        folder.mkdir(parents=True, exist_ok=True)
        if self.replicas["connector-mqtt"] == 1:
            path = folder / "mqtt.yaml"
            path.write_text("# written by the fleetstream supervisor (adr/0111)\nsite_id: mqtt\nshare_group: ''\n"
                            "sparkplug_host_id: fleetstream\n")  # the one instance is the Sparkplug host (adr/0155)
            return path
        path = folder / f"mqtt-shared-{replica}.yaml"
        path.write_text(f"# written by the fleetstream supervisor (adr/0134)\nsite_id: mqtt\n"
                        f"share_group: {SHARE_GROUP}\nclient_id: {SHARED_CONNECTOR_ID.format(i=replica)}\n"
                        # exactly one instance is the Sparkplug primary host (adr/0155): replica 0
                        + ("sparkplug_host_id: fleetstream\n" if replica == 0 else ""))
        return path

    def retire_connector_sessions(self) -> list[str]:
        """Ends the broker sessions of shared connector replicas this run does not start (a previous run had
        more): Mosquitto hands a shared subscription's messages round robin to every member, offline
        persistent sessions included, and those would sit in a session nobody resumes until it expires."""
        marker = self.s.root / "connectors" / "mqtt-replicas"
        try:
            before = int(marker.read_text())
        except (OSError, ValueError):
            before = 0
        now = self.replicas["connector-mqtt"]
        keep = now if now > 1 else 0
        retired = [SHARED_CONNECTOR_ID.format(i=i) for i in range(keep, before)]
        for client_id in retired:
            mosquitto.end_session(self.s, self.pki, client_id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(keep))
        return retired

    def start_platform(self, roles=PLATFORM_ROLES) -> None:
        t0 = time.monotonic()
        s = self.s
        if not s.clickhouse_embedded and "gateway" in roles:  # a server: the sink is its own role (adr/0061)
            roles = (*roles, "sink")
        ports.ensure_free(s.host, {**{replica_port(s.gateway_port, i): replica_name("gateway", i)
                                      for i in range(self.replicas.get("gateway", 1)) if "gateway" in roles},
                                   **{replica_port(s.streams_web_port, i): replica_name("streams", i)
                                      for i in range(self.replicas.get("streams", 1)) if "streams" in roles}})
        if "connector-mqtt" in roles:
            self.retire_connector_sessions()
        started: dict[tuple[str, int], Child] = {}
        for role in roles:
            for i in range(self.replicas.get(role, 1)):
                started[role, i] = self._spawn(self.platform_child(role, replica=i))
        for (role, i), child in started.items():
            if role == "gateway":
                url = f"http://{s.host}:{replica_port(s.gateway_port, i)}/readyz"
                with self._step(f"{child.name} /readyz"):
                    child.wait_until(lambda url=url: _http_ok(url), 180 + 60 * i, f"{child.name} /readyz")
            elif role == "streams":
                port = replica_port(s.streams_web_port, i)
                with self._step(f"{child.name} web port"):
                    child.wait_until(lambda port=port: port_open(s.host, port), 180 + 60 * i,
                                     f"{child.name} web port")
        self.timings["platform"] = time.monotonic() - t0

    def _spawn(self, child: Child, *, infra: bool = False) -> Child:
        with self._spawning:  # the infrastructure's chains spawn side by side
            child.start()
            self.children.append(child)
            if infra:
                self._infra.add(child.name)
        return child

    def stop(self, *, hard: bool = False) -> None:
        """Stops every child gracefully (SIGTERM, SIGKILL after 15 s): first the platform's processes (they
        flush to the infrastructure), then the infrastructure, each group side by side (adr/0177); Kafka's
        nodes one after another, newest first, as a cluster's controlled shutdowns need the others' quorum.
        ``hard`` kills them all at once instead (SIGKILL; Postgres gets its immediate shutdown), for a
        throwaway stack whose data dir is deleted next (tests, adr/0195): a graceful stop there only waits,
        e.g. 15 s for the last node of a cluster, whose controlled shutdown cannot finish without a quorum."""
        if hard:
            for child in self.children:
                child.kill()
        newest_first = list(reversed(self.children))
        for tier in ([c for c in newest_first if c.name not in self._infra],
                     [c for c in newest_first if c.name in self._infra]):
            lanes: dict[str, list[Child]] = {}
            for child in tier:  # one lane per child, but one for all of Kafka's nodes
                lanes.setdefault("kafka" if kafka.is_node(child.name) else child.name, []).append(child)
            with ThreadPoolExecutor(max(1, len(lanes)), thread_name_prefix="stack-stop") as pool:
                for done in [pool.submit(_stop_in_turn, lane) for lane in lanes.values()]:
                    done.result()  # returns at once for a killed child once reaped
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


def _stop_in_turn(children: list[Child]) -> None:
    for child in children:
        child.stop()


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
