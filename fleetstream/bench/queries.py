"""``fleetstream bench --queries``: how many telemetry reads the gateway serves under concurrent clients
(adr/0185).

Its own stack (Postgres, Mosquitto, Kafka, then the gateway alone) in a temp data dir. Before the gateway
starts, the benchmark writes ``points`` readings per device straight into the embedded ClickHouse (through the
sink's own column layout, so the materialised latest values and the rollup tables fill as they would), then
runs each scenario with ``clients`` concurrent keep-alive connections for ``duration`` seconds:

- ``latest``: ``GET /v1/devices/{id}/telemetry/latest`` of a random device;
- ``page``: ``GET /v1/devices/{id}/telemetry?metric=…&limit=1000`` from a random start (a full page);
- ``series``: ``GET /v1/devices/{id}/telemetry?interval=1m&agg=avg`` over the seeded hours.

Each answer's status and size are checked (a 200 with an empty page counts as an error). The load
generator runs in this process (aiohttp, the client faust already brings); its CPU is reported beside the
gateway's, because both share the machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from fleetstream.stack.supervisor import Stack
from runtime.settings import Settings

from .probes import cpu_seconds
from .runner import say
from .stats import Reservoir

METRIC = "temperature"
OTHER_METRICS = ("humidity", "state", "door_open")
SEED_PARTITION = 999


@dataclass
class QueryBenchConfig:
    clients: int = 50
    duration_s: float = 20.0
    warmup_s: float = 3.0
    devices: int = 20
    points: int = 20_000  # per device, one a second, ending a minute ago
    page: int = 1000
    scenarios: tuple[str, ...] = ("latest", "page", "series")
    port_offset: int = 0
    results_dir: Path = Path("bench/results")
    keep_data: bool = False
    profile_dir: Path | None = None  # py-spy the gateway during each scenario
    label: str = "queries"
    extra_settings: dict = field(default_factory=dict)
    idle_s: float = 10.0  # the gateway's CPU with no request, measured before the scenarios
    # requests/s offered on a fixed schedule (open loop; latency counted from each request's scheduled time, so
    # a late start is latency too), at most ``clients`` in flight; 0 = closed loop, each client asks again at once
    rate: float = 0.0


def settings_for(cfg: QueryBenchConfig, data_dir: Path) -> Settings:
    base = Settings()
    ports = {name: getattr(base, name) + cfg.port_offset for name, f in Settings.model_fields.items()
             if name.endswith("_port") and f.annotation is int}
    return Settings(data_dir=data_dir, **ports, **cfg.extra_settings)


def seed(s: Settings, tenant_id: str, devices: list[str], points: int, end_ms: int) -> int:
    """Writes the readings into the embedded ClickHouse the gateway will open (it must not be running)."""
    from sinks.clickhouse.client import ClickHouse
    from sinks.clickhouse.rows import COLUMNS
    from sinks.clickhouse.schema import create_all

    ch = ClickHouse(s.chdb_dsn)
    rows = offset = 0
    try:
        create_all(ch)
        start = end_ms - points * 1000
        for dev in devices:
            cols: list[list] = [[] for _ in COLUMNS]
            tenant, device, metric, ts, rx, num, boolean, text, proto, days, part, off = cols
            for i in range(points):
                t = start + i * 1000
                metric.append(METRIC)
                num.append(20.0 + (i % 600) / 10)
                boolean.append(None)
                text.append(None)
                ts.append(t)
            for name, value in zip(OTHER_METRICS, (55.0, "on", True), strict=True):
                metric.append(name)
                num.append(value if isinstance(value, float) else None)
                boolean.append(int(value) if isinstance(value, bool) else None)
                text.append(value if isinstance(value, str) else None)
                ts.append(end_ms - 1000)
            n = len(metric)
            tenant += [tenant_id] * n
            device += [dev] * n
            rx += [t + 5 for t in ts]
            proto += ["mqtt"] * n
            days += [365] * n
            # a partition no topic has: the sink's start-up reset (rollup progress back to its committed
            # offsets) leaves these rows' progress alone, so the series scenario reads the rollups
            part += [SEED_PARTITION] * n
            off += list(range(offset, offset + n))
            offset += n
            ch.insert_columns("telemetry", cols, COLUMNS)
            rows += n
        # the rollups are recomputed from raw after the sink commits (adr/0114): do it once here, as the sink would
        from sinks.clickhouse.rollups import refresh

        refresh(ch, ch.database, [SEED_PARTITION])
    finally:
        ch.close()
    return rows


def align_minutes(start, end):
    """[start, end) widened to whole minutes (what the series route does with interval=1m)."""
    from sinks.clickhouse.store import align

    return align(start, end, 60)


@dataclass
class Scenario:
    name: str
    paths: list[str]
    min_bytes: int  # an answer shorter than this is an error (an empty page is not a fast page)


def scenarios(cfg: QueryBenchConfig, devices: list[str], end_ms: int) -> list[Scenario]:
    import datetime as dt

    def iso(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    rnd = random.Random(7)
    start = end_ms - cfg.points * 1000
    last_start = max(start, end_ms - cfg.page * 1000 - 60_000)
    out = {
        "latest": Scenario("latest", [f"/v1/devices/{d}/telemetry/latest" for d in devices], 100),
        "page": Scenario("page", [
            f"/v1/devices/{rnd.choice(devices)}/telemetry?metric={METRIC}&limit={cfg.page}"
            f"&from={iso(rnd.randrange(start, last_start, 1000))}" for _ in range(500)], 40 * cfg.page),
        "series": Scenario("series", [
            f"/v1/devices/{d}/telemetry?metric={METRIC}&interval=1m&agg=avg&from={iso(start)}&to={iso(end_ms)}"
            for d in devices], 40 * (cfg.points // 60) // 2),
    }
    return [out[n] for n in cfg.scenarios]


async def _drive(base: str, token: str, sc: Scenario, clients: int, warmup_s: float, duration_s: float,
                 rate: float = 0.0) -> dict:
    """Closed loop (``rate`` 0): ``clients`` clients, each asking again when answered; with 50 of them the mean
    latency is 50 / req/s whatever the server does. Open loop (``rate`` > 0): request k is due at k / rate
    seconds and its latency counts from then, so the answer says whether ``rate`` is served within a latency;
    every request due within the duration is sent, so a server slower than ``rate`` makes the run longer."""
    import aiohttp

    lat, errors, statuses = Reservoir(), 0, {}
    ok = 0
    headers = {"Authorization": f"Bearer {token}"}
    conn = aiohttp.TCPConnector(limit=clients, force_close=False)
    t_start = time.monotonic()
    measure_from, stop_at = t_start + warmup_s, t_start + warmup_s + duration_s

    slot = 0

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal ok, errors, slot
        rnd = random.Random(i)
        while True:
            t0 = time.monotonic()
            if rate:
                t0, slot = t_start + slot / rate, slot + 1
                if t0 > time.monotonic():
                    await asyncio.sleep(t0 - time.monotonic())
            if t0 >= stop_at:
                return
            path = rnd.choice(sc.paths)
            try:
                async with session.get(base + path, headers=headers) as r:
                    body = await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError) as exc:  # an answer later than 30 s is an error, not a crash
                status, body = type(exc).__name__, b""
            t1 = time.monotonic()
            if t0 < measure_from:
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200 and len(body) >= sc.min_bytes:
                ok += 1
                lat.add((t1 - t0) * 1000)
            else:
                errors += 1

    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    took = time.monotonic() - measure_from
    return {"requests_per_s": round(ok / took, 1), "ok": ok, "errors": errors, "statuses": statuses,
            "latency_ms": {k: round(v, 1) if isinstance(v, float) else v for k, v in lat.summary().items()},
            "seconds": round(took, 1)}


def _single(base: str, token: str, sc: Scenario, n: int = 30) -> dict:
    """One request at a time: the floor each scenario's latency stands on."""
    import httpx

    lat = Reservoir()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for i in range(n):
            t0 = time.monotonic()
            r = http.get(sc.paths[i % len(sc.paths)])
            r.raise_for_status()
            lat.add((time.monotonic() - t0) * 1000)
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in lat.summary().items()}


def run(cfg: QueryBenchConfig) -> dict:
    import httpx

    from gateway.admin import Admin

    data_dir = Path(tempfile.mkdtemp(prefix="fleetstream-bench-queries-"))
    s = settings_for(cfg, data_dir)
    stack = Stack(s)
    report: dict = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
                    "load_avg_start": os.getloadavg(), "scenarios": {}}
    try:
        t0 = time.monotonic()
        stack.start_infra()
        say(f"infrastructure up in {time.monotonic() - t0:.1f}s (data {data_dir})")
        admin = Admin(s)
        try:
            tenant = admin.create_tenant(f"bench-queries-{int(time.time())}")
            devices = [f"meter-{i:04d}" for i in range(cfg.devices)]
            for d in devices:
                admin.create_device(tenant["tenant_id"], d, device_type="meter", tags=["bench"])
        finally:
            admin.close()
        end_ms = (int(time.time()) - 60) * 1000
        t0 = time.monotonic()
        rows = seed(s, tenant["tenant_id"], devices, cfg.points, end_ms)
        report["seeded"] = {"rows": rows, "seconds": round(time.monotonic() - t0, 1)}
        say(f"seeded {rows} rows in {report['seeded']['seconds']}s")
        stack.start_platform(roles=("gateway",))
        gw = next(c for c in stack.children if c.name == "gateway")
        base = f"http://{s.host}:{s.gateway_port}"
        r = httpx.post(f"{base}/v1/oauth/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": tenant["client_id"],
            "client_secret": tenant["client_secret"]})
        r.raise_for_status()
        token = r.json()["access_token"]
        me = psutil.Process()
        # what the gateway burns with no request (its Kafka followers, the sink, chdb's background merges of
        # the seeded parts): subtracted from the CPU per answer, which is otherwise charged with it
        cpu0, w0 = cpu_seconds([gw.pid]), time.monotonic()
        time.sleep(cfg.idle_s)
        report["gateway_idle_cpu_pct"] = round(100 * (cpu_seconds([gw.pid]) - cpu0) / (time.monotonic() - w0), 1)
        say(f"gateway idle: {report['gateway_idle_cpu_pct']}% CPU")
        for sc in scenarios(cfg, devices, end_ms):
            single = _single(base, token, sc)
            cpu0, me0, w0 = cpu_seconds([gw.pid]), cpu_seconds([me.pid]), time.monotonic()
            profiler = None
            if cfg.profile_dir:
                from .profile import Profiler

                profiler = Profiler(cfg.profile_dir)
                profiler.start({"gateway": ([gw.pid], True)}, cfg.warmup_s + cfg.duration_s, sc.name)
            res = asyncio.run(_drive(base, token, sc, cfg.clients, cfg.warmup_s, cfg.duration_s, cfg.rate))
            wall = time.monotonic() - w0
            if profiler is not None:
                res["profile"] = profiler.finish()
            res["single_request_ms"] = single
            res["gateway_cpu_pct"] = round(100 * (cpu_seconds([gw.pid]) - cpu0) / wall, 1)
            # CPU per answer: steadier than req/s when other processes share the machine
            res["gateway_cpu_ms_per_request"] = round(10 * res["gateway_cpu_pct"] / max(res["requests_per_s"], 0.1), 2)
            res["gateway_cpu_ms_per_request_above_idle"] = round(
                10 * max(res["gateway_cpu_pct"] - report["gateway_idle_cpu_pct"], 0) / max(res["requests_per_s"], 0.1), 2)
            res["load_avg"] = os.getloadavg()
            res["load_generator_cpu_pct"] = round(100 * (cpu_seconds([me.pid]) - me0) / wall, 1)
            report["scenarios"][sc.name] = res
            say(f"{sc.name}: {res['requests_per_s']} req/s, p50 {res['latency_ms'].get('p50')} ms, "
                f"p99 {res['latency_ms'].get('p99')} ms, errors {res['errors']}, gateway CPU {res['gateway_cpu_pct']}%"
                f" (alone: p50 {single.get('p50')} ms)")
    finally:
        stack.stop()
        if not cfg.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
            s.master_key_path.unlink(missing_ok=True)
    report["load_avg_end"] = os.getloadavg()
    return report


def markdown(r: dict) -> str:
    cfg, m = r["config"], r.get("machine", {})
    lines = [
        f"# fleetstream query benchmark ({r.get('finished_utc')})",
        "",
        f"git `{r.get('git_rev')}`, {m.get('cores')} cores; load average {_la(r.get('load_avg_start'))} at start, "
        f"{_la(r.get('load_avg_end'))} at end (other processes on the machine count against every number).",
        f"Embedded ClickHouse (chdb), {cfg['devices']} devices × {cfg['points']} points, {cfg['clients']} concurrent "
        f"keep-alive clients for {cfg['duration_s']} s per scenario"
        + (f", open loop at {cfg['rate']:g} requests/s (latency from each request's scheduled time)"
           if cfg.get("rate") else ", closed loop") + ", load generator in the same machine.",
        "",
        f"Gateway CPU with no request: {r.get('gateway_idle_cpu_pct', '?')} %.",
        "",
        "| scenario | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | alone p50 ms | gateway CPU % | "
        "gateway CPU ms/request | above idle | generator CPU % | load avg (1 min) at end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in r.get("scenarios", {}).items():
        lat = s["latency_ms"]
        lines.append(f"| {name} | {s['requests_per_s']} | {lat.get('p50', '–')} | {lat.get('p95', '–')} | "
                     f"{lat.get('p99', '–')} | {lat.get('max', '–')} | {s['errors']} | "
                     f"{s['single_request_ms'].get('p50', '–')} | {s['gateway_cpu_pct']} | "
                     f"{s.get('gateway_cpu_ms_per_request', '–')} | {s.get('gateway_cpu_ms_per_request_above_idle', '–')} | "
                     f"{s['load_generator_cpu_pct']} | {_la(s.get('load_avg', [])[:1])} |")
    return "\n".join(lines) + "\n"


def _la(la) -> str:
    return "/".join(f"{x:.1f}" for x in la) if la else "?"
