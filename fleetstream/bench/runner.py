"""One benchmark run: its own stack in a temp data dir, a provisioned fleet, fixed-rate load (or rate
steps), probes, a drain, and the sent-vs-stored audit; returns the report as a dict."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from fleetstream.sim import Generator, provision_tenants, register
from fleetstream.sim.payloads import payload as payload_renderer
from fleetstream.sim.payloads import points_per_message
from fleetstream.stack.supervisor import PLATFORM_ROLES, Stack
from runtime.settings import Settings
from schemas import topics

from . import audit, kafka_baseline
from .config import BenchConfig
from .probes import LagSampler, QueryProbe, ResourceSampler, TopicLatencyProbe, WebSocketProbe
from .profile import Profiler
from .stats import Reservoir

log = logging.getLogger("fleetstream.bench")

# the streams worker's consumer groups and internal topic (streams/validate.py, streams/bundles.py)
VALIDATE_GROUP = "fleetstream-streams-validate"
ACTIVITY_GROUP, ACTIVITY_TOPIC = "fleetstream-streams", "fleetstream-streams-telemetry-bundles"


def bench_settings(cfg: BenchConfig, data_dir: Path) -> Settings:
    """Ports from FLEETSTREAM_* variables (Settings reads them), each shifted by ``--port-offset``."""
    base = Settings()
    ports = {name: getattr(base, name) + cfg.port_offset for name, f in Settings.model_fields.items()
             if name.endswith("_port") and f.annotation is int}
    return Settings(data_dir=data_dir, **ports, **cfg.extra_settings)


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, cfg: BenchConfig):
        self.cfg = cfg
        self.data_dir = Path(tempfile.mkdtemp(prefix="fleetstream-bench-"))
        self.s = bench_settings(cfg, self.data_dir)
        self.stack = Stack(self.s, cfg.replicas)
        self.report: dict = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
                             "load_avg_start": os.getloadavg(), "steps": []}
        self.gen: Generator | None = None
        self.profiler = Profiler(cfg.profile_dir) if cfg.profile_dir else None
        self.idle_cpu: dict[str, float] = {}
        self._token: tuple[float, str] | None = None

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.s.master_key_path.unlink(missing_ok=True)  # the dev master key lives beside the data dir

    def finish(self) -> None:
        """Stops the stack and removes its data dir unless ``keep_data``. A stack whose data goes next is
        killed (``Stack.stop(hard=True)``, adr/0175): the audit has read what it needs and stopped the sink
        cleanly before it, so a graceful stop of the rest would only wait (~9 s a run here)."""
        self.stack.stop(hard=not self.cfg.keep_data)
        if not self.cfg.keep_data:
            self.remove_data()

    # -- set-up ---------------------------------------------------------------------------------------
    def start_stack(self) -> None:
        t0 = time.monotonic()
        self.stack.start_infra()
        self.stack.start_platform(self.cfg.roles or PLATFORM_ROLES)
        self.report["stack_start_s"] = round(time.monotonic() - t0, 1)
        say(f"stack up in {self.report['stack_start_s']}s (data {self.data_dir}, kafka {self.s.bootstrap_servers})")

    def token(self) -> str:
        if self._token is None or time.monotonic() - self._token[0] > self.s.token_ttl_s / 2:
            r = httpx.post(f"http://{self.s.host}:{self.s.gateway_port}/v1/oauth/token",
                           data={"grant_type": "client_credentials", "client_id": self.tenant["client_id"],
                                 "client_secret": self.tenant["client_secret"]}, timeout=10)
            r.raise_for_status()
            self._token = (time.monotonic(), r.json()["access_token"])
        return self._token[1]

    def provision(self):
        """``cfg.tenants`` tenants, the connected fleet spread evenly over them (a certificate each), then
        ``cfg.registered - cfg.devices`` devices spread the same way that never connect (no certificates). The
        probes' token and devices are the first tenant's."""
        cfg = self.cfg
        fleet, took = provision_tenants(
            self.s, cfg.devices, cfg.tenants, out_dir=self.data_dir / "fleet", prefix="bench",
            progress=lambda d, n: say(f"provisioned {d}/{n}") if d % 1000 == 0 else None,
            tenant_progress=lambda d, n: say(f"tenants {d}/{n}") if d % 100 == 0 else None)
        self.tenant = {"tenant_id": fleet.tenant_id, **fleet.extra}
        self.tenant_ids = fleet.tenant_ids
        self.report["provisioning"] = {"devices": cfg.devices, "seconds": round(took["devices_s"], 1),
                                       "devices_per_s": round(cfg.devices / max(1e-3, took["devices_s"]), 1),
                                       "tenants": cfg.tenants, "tenants_seconds": round(took["tenants_s"], 1),
                                       "tenants_per_s": round(cfg.tenants / max(1e-3, took["tenants_s"]), 1)}
        say(f"provisioned {cfg.tenants} tenants in {took['tenants_s']:.1f}s, {cfg.devices} devices in "
            f"{took['devices_s']:.1f}s")
        extra = max(0, cfg.registered - cfg.devices)
        if extra:
            took = register(self.s, self.tenant_ids, extra, prefix="reg",
                            progress=lambda d, n: say(f"registered {d}/{n}") if d % 10_000 == 0 else None)
            self.report["registration"] = {"devices": extra, "seconds": round(took, 1),
                                           "devices_per_s": round(extra / took, 1)}
            say(f"registered {extra} more devices (never connecting) in {took:.1f}s")
        return fleet

    def components(self) -> dict[str, tuple[list[int], bool]]:
        out = {c.name: ([c.pid], True) for c in self.stack.children if c.pid}
        if self.gen is not None:
            out["load-generator"] = (self.gen.pids, True)
        out["bench-probes"] = ([os.getpid()], False)
        return out

    # -- the run --------------------------------------------------------------------------------------
    def execute(self) -> dict:
        cfg = self.cfg
        try:
            self.start_stack()
            if cfg.baseline_records > 0:
                say(f"bare Kafka baseline ({cfg.baseline_records} records)")
                self.report["kafka_baseline"] = kafka_baseline.measure(self.s.kafka, cfg.baseline_records)
                say(f"baseline: {self.report['kafka_baseline']}")
            fleet = self.provision()
            self.gen = Generator(fleet, self.s.mqtt_broker_host, self.s.mqtt_tls_port, qos=cfg.qos,
                                 payload=cfg.payload, workers=cfg.workers, max_rate=max(cfg.rates()))
            connected = self.gen.start()
            self.report["sessions"] = {"devices": cfg.devices, "connected": connected,
                                       "connect_s": round(self.gen.connect_s, 1), "generator_processes": len(self.gen.procs)}
            say(f"{connected}/{cfg.devices} device sessions connected in {self.gen.connect_s:.1f}s")
            self._load(fleet)
        finally:
            self.finish()
        self.report["load_avg_end"] = os.getloadavg()
        return self.report

    def _load(self, fleet) -> None:
        cfg, gen = self.cfg, self.gen
        metric = _first_metric(cfg.payload)
        sink_group = getattr(self.s, "sink_group_prefix", "fleetstream-sink-clickhouse")
        # validate reads raw telemetry in its own group (adr/0057); device-activity's lag on the bundle
        # topic counts bundles (one per validate batch and partition), not readings
        groups = {VALIDATE_GROUP: topics.TELEMETRY_RAW.name, sink_group: topics.TELEMETRY.name,
                  ACTIVITY_GROUP: ACTIVITY_TOPIC}
        raw = TopicLatencyProbe(self.s.kafka, topics.TELEMETRY_RAW.name)
        validated = TopicLatencyProbe(self.s.kafka, topics.TELEMETRY.name)  # isolates the streams stage
        lag = LagSampler(self.s.kafka, groups)
        # the probes hold one tenant's token: their devices are the first tenant's (all of them with --tenants 1)
        own = [d.device_id for d in fleet.devices if fleet.tenant_of(d) == fleet.tenant_id]
        query = QueryProbe(f"http://{self.s.host}:{self.s.gateway_port}", self.token, own[:cfg.probe_devices], metric)
        res = ResourceSampler(self.components, timeline_every_s=cfg.timeline_every_s)
        n_ws = min(50, max(cfg.probe_devices, len(fleet.devices) // 100))
        ws = WebSocketProbe(f"ws://{self.s.host}:{self.s.gateway_port}/v1/stream", self.token(),
                            own[:n_ws])
        ws.start()
        if not ws.ready.wait(15) or ws.error:
            say(f"WebSocket probe unavailable: {ws.error or 'no subscription confirmed'}")
        dlq_before = _high_watermarks(lag, topics.DEAD_LETTER.name)
        probes = [raw, validated, lag, query, res]
        for p in probes:
            p.start()
        try:
            rates = cfg.rates()
            self.idle_cpu = self._idle(res)
            gen.set_rate(rates[0])
            say(f"warm-up {cfg.warmup_s:.0f}s at {rates[0]:g} msg/s")
            _run_for(gen, cfg.warmup_s)
            raw.measuring = validated.measuring = query.measuring = ws.measuring = True
            for rate in rates:
                step = self._step(rate, raw, lag, query, res, ws, validated)
                self.report["steps"].append(step)
                if cfg.find_max and not step["stable"]:
                    break
            sent_per_device = gen.stop()
            say(f"load stopped; draining (≤{cfg.drain_timeout_s:.0f}s)")
            self.report["drain"] = _drain(lag, cfg.drain_timeout_s)
            dlq_after = _high_watermarks(lag, topics.DEAD_LETTER.name)
            self.report["dlq_records"] = sum(dlq_after.values()) - sum(dlq_before.values())
        finally:
            for p in probes:
                p.stop()
            ws.stop()
        self.report["websocket_probe"] = {"devices": len(ws.devices), "events": ws.events, "dropped": ws.dropped,
                                          "error": ws.error}
        self.report["generator"] = {"sent": gen.stats.sent, "acked": gen.stats.acked, "refused": gen.stats.refused,
                                    "skipped": gen.stats.skipped, "disconnects": gen.stats.disconnects,
                                    "cpu_s": round(gen.stats.cpu_s, 1)}
        self.report["lag_series"] = lag.series
        self.report["probe_errors"] = {p.name: getattr(p, "last_error", None) for p in probes if getattr(p, "errors", 0)}
        self.report["resources_whole_run"] = res.summary()
        self.report["resources_timeline"], self.report["rss_growth"] = res.timeline, res.growth()
        stable = [s for s in self.report["steps"] if s["stable"]]
        self.report["max_stable_rate"] = max((s["target_rate"] for s in stable), default=None) if cfg.find_max else None
        self._audit(sent_per_device, drained=all(v == 0 for v in self.report["drain"]["lag_after"].values()))

    def _step(self, rate: float, raw: TopicLatencyProbe, lag: LagSampler, query: QueryProbe,
              res: ResourceSampler, ws: WebSocketProbe, validated: TopicLatencyProbe) -> dict:
        cfg, gen = self.cfg, self.gen
        gen.set_rate(rate)
        raw.produced, raw.observed, query.latency, ws.latency = Reservoir(), Reservoir(), Reservoir(), Reservoir()
        query.floor = Reservoir()
        validated.produced, validated.observed = Reservoir(), Reservoir()
        lag_i, res_i, work_i = len(lag.series), len(res.machine), len(lag.work)
        cpu0 = dict(res.cpu_total_s)
        st0, t0 = gen.poll(0).acked, time.monotonic()
        sent0 = gen.stats.sent
        say(f"step: {rate:g} msg/s for {cfg.step_duration():.0f}s")
        if self.profiler is not None:
            self.profiler.start(self.components(), cfg.step_duration() - 2, f"{rate:g}")
        _run_for(gen, cfg.step_duration(), progress=True)
        dt = time.monotonic() - t0
        acked = gen.stats.acked - st0
        handled = _handled(lag.work[work_i:], getattr(self.s, "sink_group_prefix", "fleetstream-sink-clickhouse"))
        series = lag.series[lag_i:]
        step = {
            "target_rate": rate, "seconds": round(dt, 1), "sent": gen.stats.sent - sent0, "acked": acked,
            "accepted_msg_s": round(acked / dt), "points_s": round(acked * points_per_message(cfg.payload) / dt),
            "latency_ms": {"publish_to_kafka_produce": raw.produced.summary(),
                           "publish_to_kafka_observed": raw.observed.summary(),
                           "publish_to_validated_produce": validated.produced.summary(),
                           "publish_to_validated_observed": validated.observed.summary(),
                           "publish_to_queryable": query.latency.summary(),
                           "publish_to_queryable_floor": query.floor.summary(),
                           "publish_to_websocket": ws.latency.summary() if not ws.error else None},
            "lag": _lag_stats(series),
            "resources": res.summary(since=max(0, res_i - 1)),
            # CPU per accepted message: the measure that survives a busy shared machine; capacity on
            # N free cores ≈ N / Σ(cpu per message)
            # marginal: minus what the component burns with every session connected and no load, divided
            # by the records that component itself handled in the step (a lagging stage handles fewer)
            "cpu_us_per_msg": {k: round(1e6 * max(0.0, v - cpu0.get(k, 0.0) - self.idle_cpu.get(k, 0.0) * dt)
                                        / max(1, handled.get(k, acked)), 1) for k, v in res.cpu_total_s.items()},
            "handled": handled,
            "machine_cpu_pct": round(sum(res.machine[res_i:]) / max(1, len(res.machine[res_i:])), 1),
            "load_avg": os.getloadavg(),
        }
        platform = sum(v for k, v in step["cpu_us_per_msg"].items() if k not in ("bench-probes", "load-generator"))
        step["projected_msg_s"] = {
            "platform_only": round(1e6 * (os.cpu_count() or 1) / platform) if platform else None,
            "with_generator": round(1e6 * (os.cpu_count() or 1) / (platform + step["cpu_us_per_msg"].get(
                "load-generator", 0))) if platform else None}
        # a Python role runs on one core at most (one event loop or the GIL): its own ceiling
        step["projected_msg_s"]["python_role_ceiling"] = {
            k: round(1e6 / v) for k, v in step["cpu_us_per_msg"].items()
            if v > 0 and k in ("streams", "connector-mqtt", "gateway", "sink")}
        if self.profiler is not None:
            step["profile"] = self.profiler.finish()
        step["stable"], step["verdict"] = _judge(step, rate)
        say(f"step {rate:g}: accepted {step['accepted_msg_s']}/s, lag {step['lag']}, "
            f"p99 kafka {step['latency_ms']['publish_to_kafka_observed'].get('p99')} ms, "
            f"p99 queryable {step['latency_ms']['publish_to_queryable'].get('p99')} ms → {step['verdict']}")
        return step

    def _idle(self, res: ResourceSampler) -> dict[str, float]:
        """CPU-seconds per second of each component with the fleet connected and silent."""
        if self.cfg.idle_s <= 0:
            return {}
        time.sleep(1.5)  # at least one sample taken before the window opens
        cpu0, t0 = dict(res.cpu_total_s), time.monotonic()
        say(f"idle {self.cfg.idle_s:.0f}s (sessions connected, no load)")
        _run_for(self.gen, self.cfg.idle_s)
        time.sleep(1.1)
        dt = time.monotonic() - t0
        idle = {k: max(0.0, (v - cpu0.get(k, 0.0)) / dt) for k, v in res.cpu_total_s.items()}
        self.report["idle_cpu_pct"] = {k: round(100 * v, 1) for k, v in idle.items()}
        return idle

    def _audit(self, sent_per_device: dict, drained: bool) -> None:
        # chdb: one process per path — stop whatever holds it before counting
        for child in list(self.stack.children):
            if child.name in ("gateway", "sink"):
                child.stop()
        try:
            stored = audit.count_stored_in_subprocess(self.s.chdb_dsn, self.tenant_ids)
            per_msg = points_per_message(self.cfg.payload)
            self.report["delivery"] = {**audit.compare(sent_per_device, stored, per_msg), "drained": drained}
        except Exception as exc:
            self.report["delivery"] = {"error": repr(exc)}
        say(f"delivery: {self.report['delivery']}")


def _first_metric(payload: str) -> str:
    import json

    return next(iter(json.loads(payload_renderer(payload)(1_700_000_000_000, 1))["values"]))


def _run_for(gen: Generator, seconds: float, progress: bool = False) -> None:
    end, last = time.monotonic() + seconds, (time.monotonic(), gen.stats.acked)
    while time.monotonic() < end:
        gen.poll(min(1.0, max(0.0, end - time.monotonic())))
        if progress and sys.stderr.isatty():
            now, acked = time.monotonic(), gen.stats.acked
            print(f"\r  sent {gen.stats.sent} acked {acked} ({(acked - last[1]) / max(1e-3, now - last[0]):,.0f}/s) "
                  f"connected {gen.stats.connected}   ", end="", file=sys.stderr, flush=True)
            last = (now, acked)
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)


def _handled(work: list[tuple[float, dict[str, int]]], sink_group: str) -> dict[str, int]:
    """Records each platform stage processed during the step, from topic watermarks and group commits."""
    if len(work) < 2:
        return {}
    first, last = work[0][1], work[-1][1]

    def delta(key: str) -> int:
        return max(0, last.get(key, 0) - first.get(key, 0))

    sink = delta(f"committed:{sink_group}")
    return {"connector-mqtt": delta(f"high:{topics.TELEMETRY_RAW.name}"), "streams": delta(f"committed:{VALIDATE_GROUP}"),
            "gateway": sink, "sink": sink}


def _lag_stats(series: list[dict]) -> dict:
    out = {}
    for group in (k for k in (series[0] if series else {}) if k != "t"):
        vals = [(p["t"], p[group]) for p in series if p.get(group) is not None]
        if not vals:
            continue
        half = vals[len(vals) // 2:]
        growth = (half[-1][1] - half[0][1]) / max(1e-3, half[-1][0] - half[0][0]) if len(half) > 1 else 0.0
        out[group] = {"end": vals[-1][1], "max": max(v for _, v in vals), "growth_per_s": round(growth, 1)}
    return out


def _judge(step: dict, rate: float) -> tuple[bool, str]:
    """Stable: the fleet's messages were accepted at the offered rate and no consumer fell behind for good."""
    problems = []
    if step["accepted_msg_s"] < 0.95 * rate:
        problems.append(f"accepted {step['accepted_msg_s']} < 95% of {rate:g}")
    for group, lag in step["lag"].items():
        if lag["growth_per_s"] > 0.05 * rate and lag["end"] > rate:
            problems.append(f"{group} lag growing {lag['growth_per_s']}/s")
        elif lag["end"] > 5 * rate:
            problems.append(f"{group} lag {lag['end']} > 5 s of load")
    q = step["latency_ms"]["publish_to_queryable"]
    if q.get("p99") and q["p99"] > 10_000:
        problems.append(f"queryable p99 {q['p99']:.0f} ms > 10 s")
    return (not problems), ("stable" if not problems else "; ".join(problems))


def _drain(lag: LagSampler, timeout: float) -> dict:
    t0 = time.monotonic()
    last = {}
    while time.monotonic() - t0 < timeout:
        try:
            last = lag.lag()
        except Exception as exc:  # metadata still settling after a broker restart (chaos): ask again
            last = {"error": repr(exc)}
        if last and all(v == 0 for v in last.values()):
            break
        time.sleep(0.5)
    return {"seconds": round(time.monotonic() - t0, 1), "lag_after": last}


def _high_watermarks(lag: LagSampler, topic: str) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    with lag.lock:
        md = lag.wm.list_topics(topic, timeout=10).topics[topic]
        return {p: lag.wm.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in md.partitions}
