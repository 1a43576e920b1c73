"""``fleetstream bench``: arguments and the entry point (kept apart so the main parser stays light)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from fleetstream.sim.payloads import PAYLOADS

from .config import CLUSTER_VICTIMS, VICTIMS, BenchConfig

DEFAULT_RATE, DEFAULT_DEVICES = 2000.0, 200


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="everyday mode: 100 devices, 1,000 msg/s, 20 s (< 2 min on a quiet machine)")
    p.add_argument("--rate", type=float, help=f"messages/s offered by the whole fleet (default {DEFAULT_RATE:.0f}; "
                   "chaos: 500)")
    p.add_argument("--duration", type=float, default=60, help="seconds of measured load")
    p.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="simulated devices, one MQTT session each")
    p.add_argument("--qos", type=int, default=1, choices=[0, 1])
    p.add_argument("--payload", default="smart-meter", choices=sorted(PAYLOADS))
    p.add_argument("--workers", type=int, help="load-generator processes (default: from devices and rate)")
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--find-max", action="store_true", help="step the rate up until it is no longer sustained")
    p.add_argument("--start-rate", type=float, default=1000)
    p.add_argument("--step-factor", type=float, default=1.5)
    p.add_argument("--max-rate", type=float, default=40000)
    p.add_argument("--step-duration", type=float, default=30)
    p.add_argument("--baseline-records", type=int, help="records for the bare-Kafka measurement")
    p.add_argument("--idle", action="store_true",
                   help="idle run: --devices connected and silent for --duration s; CPU and RSS per component "
                   "(no baseline, no load, no latency probes)")
    p.add_argument("--registered", type=int, default=0, metavar="N",
                   help="devices registered in all; those beyond --devices never connect (no certificates)")
    p.add_argument("--tenants", type=int, default=1, metavar="N",
                   help="tenants provisioned; the devices (connected and registered) spread evenly over them, the "
                   "probes' devices in the first")
    p.add_argument("--sample-every", type=float, default=10.0, metavar="S",
                   help="seconds between rows of the report's resource timeline (RSS and CPU per component)")
    p.add_argument("--port-offset", type=int, default=0, help="added to every FLEETSTREAM_*_PORT (parallel stacks)")
    p.add_argument("--results-dir", default="bench/results")
    p.add_argument("--keep-data", action="store_true", help="keep the temp data dir (logs) after the run")
    p.add_argument("--profile", metavar="DIR", help="py-spy each Python component during every step into DIR")
    p.add_argument("--label", help="name of the result files (default: quick|full|find-max|chaos)")
    p.add_argument("--chaos", nargs="?", const="all", metavar="COMPONENTS",
                   help="reliability run: kill -9 each component in turn under steady load (comma-separated, "
                        "default all: connector-mqtt,streams,gateway,kafka,mosquitto,postgres); --rate/--devices "
                        "default to 500/100 here")
    p.add_argument("--kafka-brokers", type=int, help="KRaft nodes of the run's stack; 3 = the local SASL_SSL cluster "
                   "(adr/0132); chaos rounds kafka-controller / kafka-leader imply 3")
    p.add_argument("--settle", type=float, help="chaos: seconds of steady load before and after each kill")
    p.add_argument("--replicas", default="", metavar="ROLE=N,...",
                   help="processes per role (streams=2,mqtt=2,gateway=2); chaos victims may then name a replica, "
                        "e.g. streams.1 (adr/0134)")
    p.add_argument("--recover-timeout", type=float, help="chaos: seconds a component may take to come back")
    p.add_argument("--queries", nargs="?", const="latest,page,series", metavar="SCENARIOS",
                   help="query run (adr/0185): concurrent REST reads of seeded telemetry against the gateway alone "
                        "(comma-separated, default latest,page,series); --duration defaults to 20 s here")
    p.add_argument("--clients", type=int, default=50, help="queries: concurrent keep-alive clients")
    p.add_argument("--points", type=int, default=20_000, help="queries: seeded points per device")
    p.add_argument("--query-rate", type=float, default=0.0,
                   help="queries: requests/s offered on a fixed schedule (open loop, at most --clients in flight); "
                        "default 0 = closed loop")


def config_from_args(a) -> BenchConfig:
    from fleetstream.stack.supervisor import parse_replicas

    from .config import quick

    try:
        replicas = parse_replicas(a.replicas)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if a.chaos:
        from .chaos import victim_known
        from .config import chaos

        names = list(VICTIMS) if a.chaos == "all" else [n.strip() for n in a.chaos.split(",") if n.strip()]
        unknown = sorted(n for n in names if not victim_known(n, replicas) and n not in CLUSTER_VICTIMS)
        if unknown:
            raise SystemExit(f"unknown chaos components {unknown}; known: {', '.join(VICTIMS + CLUSTER_VICTIMS)} "
                             "and, with --replicas, ROLE.I for a further replica")
        cfg = chaos(names)
        if a.rate is not None:  # given, even when it equals the plain benchmark's default
            cfg.rate = a.rate
        if a.devices != DEFAULT_DEVICES:
            cfg.devices = a.devices
        if a.settle is not None:
            cfg.settle_s = a.settle
        if a.recover_timeout is not None:
            cfg.recover_timeout_s = a.recover_timeout
    elif a.idle:
        from .config import idle

        cfg = idle(a.devices, a.duration)
    elif a.quick:
        cfg = quick()
    else:
        cfg = BenchConfig(rate=a.rate or DEFAULT_RATE, duration_s=a.duration, devices=a.devices,
                          label="find-max" if a.find_max else "full")
    cfg.qos, cfg.payload, cfg.workers, cfg.warmup_s = a.qos, a.payload, a.workers, a.warmup
    cfg.find_max, cfg.start_rate, cfg.step_factor = a.find_max, a.start_rate, a.step_factor
    cfg.max_rate, cfg.step_s, cfg.port_offset = a.max_rate, a.step_duration, a.port_offset
    cfg.results_dir, cfg.keep_data = Path(a.results_dir), a.keep_data
    if a.baseline_records:
        cfg.baseline_records = a.baseline_records
    cfg.registered, cfg.timeline_every_s = a.registered, a.sample_every
    if a.tenants < 1 or a.tenants > max(cfg.devices, 1):
        raise SystemExit(f"--tenants must be between 1 and --devices ({cfg.devices}): every tenant gets a device")
    cfg.tenants = a.tenants
    if a.profile:
        cfg.profile_dir = Path(a.profile)
    if a.label:
        cfg.label = a.label
    brokers = a.kafka_brokers or (3 if set(cfg.chaos) & set(CLUSTER_VICTIMS) else None)
    if brokers:
        cfg.extra_settings["kafka_brokers"] = brokers
    cfg.replicas = replicas
    if replicas and cfg.chaos:  # one probe device per partition or so: a takeover shows on all of them
        cfg.probe_devices = max(cfg.probe_devices, 8)
    return cfg


def run_from_args(a) -> int:
    import logging

    from . import report
    from .runner import Run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # SIGTERM unwinds like Ctrl-C, so the run's own stack is always stopped (its children have their own
    # process groups and would outlive a killed bench)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if a.queries:
        return _run_queries(a)
    cfg = config_from_args(a)
    if cfg.chaos:
        from .chaos import ChaosRun
        from .chaos_report import markdown

        result = ChaosRun(cfg).execute()
    elif cfg.idle_only:
        from .idle import IdleRun
        from .resources_report import idle_markdown

        result, markdown = IdleRun(cfg).execute(), idle_markdown
    else:
        result, markdown = Run(cfg).execute(), report.markdown
    path = report.write(result, cfg.results_dir, render=markdown)
    print(markdown(result))
    print(f"written: {path} (+ .md)")
    print(json.dumps({"report": str(path)}), file=sys.stderr)
    return 0


def _run_queries(a) -> int:
    from . import queries, report

    known = ("latest", "page", "series")
    names = tuple(n.strip() for n in a.queries.split(",") if n.strip())
    if not names or set(names) - set(known):
        raise SystemExit(f"unknown query scenarios {a.queries!r}; known: {', '.join(known)}")
    devices = a.devices if a.devices != DEFAULT_DEVICES else queries.QueryBenchConfig.devices
    cfg = queries.QueryBenchConfig(clients=a.clients, duration_s=a.duration if a.duration != 60 else 20,
                                   warmup_s=min(a.warmup, 5), devices=devices, points=a.points, scenarios=names,
                                   port_offset=a.port_offset, results_dir=Path(a.results_dir), keep_data=a.keep_data,
                                   label=a.label or "queries", profile_dir=Path(a.profile) if a.profile else None,
                                   rate=a.query_rate)
    result = queries.run(cfg)
    path = report.write(result, cfg.results_dir, render=queries.markdown)
    print(queries.markdown(result))
    print(f"written: {path} (+ .md)")
    return 0
