"""The run's JSON (everything measured) and a short Markdown summary, kept under
``bench/results/<date>-<gitrev>-<cores>c/`` so numbers always carry the machine and the code they came from."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

from fleetstream.sim.payloads import points_per_message

TARGETS = {"sustained_msg_s": 10_000, "p99_websocket_ms": 100, "p99_queryable_ms": 2000, "sessions": 10_000}


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    import psutil

    return {"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "kernel": platform.release(), "ulimit_nofile": _nofile()}


def _nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def write(report: dict, results_root: Path, render=None) -> Path:
    report.setdefault("machine", machine())
    report.setdefault("git_rev", git_rev())
    report.setdefault("finished_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    folder = results_root / f"{time.strftime('%Y-%m-%d', time.gmtime())}-{report['git_rev']}-{report['machine']['cores']}c"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%H%M%S', time.gmtime())}-{report['config']['label']}"
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    (folder / f"{stem}.md").write_text((render or markdown)(report))
    report["files"] = [str(folder / f"{stem}.json"), str(folder / f"{stem}.md")]
    return folder / f"{stem}.json"


def _ms(d: dict | None, k: str) -> str:
    if not d or d.get("count", 0) == 0 or d.get(k) is None:
        return "–"
    return f"{d[k]:.0f}"


def markdown(r: dict) -> str:
    cfg, m = r["config"], r.get("machine", {})
    la0, la1 = r.get("load_avg_start"), r.get("load_avg_end")
    lines = [
        f"# fleetstream benchmark — {cfg['label']} ({r.get('finished_utc')})",
        "",
        f"git `{r.get('git_rev')}`, {m.get('cores')} cores, {m.get('memory_gb')} GiB; load average "
        f"{_la(la0)} at start, {_la(la1)} at end (other processes on the machine count against every number).",
        f"Load: QoS{cfg['qos']} `{cfg['payload']}` ({points_per_message(cfg['payload'])} points/message), {cfg['devices']} devices, one MQTT/TLS "
        f"session each, generator on the same machine ({r.get('sessions', {}).get('generator_processes')} processes).",
        "",
        "| target rate msg/s | accepted msg/s | points/s | p50/p95/p99/max publish→Kafka ms | "
        "p50/p95/p99/max publish→WebSocket ms | p50/p95/p99/max publish→queryable ms | lag end (validate / sink / activity bundles) "
        "| CPU µs/msg (platform / generator) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r.get("steps", []):
        k, q = s["latency_ms"]["publish_to_kafka_observed"], s["latency_ms"]["publish_to_queryable"]
        w = s["latency_ms"].get("publish_to_websocket")
        cpu = s.get("cpu_us_per_msg", {})
        plat = sum(v for n, v in cpu.items() if n not in ("bench-probes", "load-generator"))
        lag = " / ".join(str(v.get("end")) for v in s["lag"].values())
        lines.append(f"| {s['target_rate']:g} | {s['accepted_msg_s']} | {s['points_s']} | "
                     f"{'/'.join(_ms(k, x) for x in ('p50', 'p95', 'p99', 'max'))} | "
                     f"{'/'.join(_ms(w, x) for x in ('p50', 'p95', 'p99', 'max'))} | "
                     f"{'/'.join(_ms(q, x) for x in ('p50', 'p95', 'p99', 'max'))} | {lag} | "
                     f"{plat:.0f} / {cpu.get('load-generator', 0):.0f} | {s['verdict']} |")
    d = r.get("delivery", {})
    kb = r.get("kafka_baseline", {})
    best = max((s["accepted_msg_s"] for s in r.get("steps", []) if s["stable"]), default=0)
    lines += [
        "",
        f"**Delivery** (counted in ClickHouse after the sink drained): published {d.get('messages_published')}, "
        f"acknowledged {d.get('messages_acked')}, points expected {d.get('points_expected')}, stored "
        f"{d.get('points_stored')}, **lost {d.get('lost_points')}, duplicated in query results "
        f"{d.get('duplicated_in_query')}**; physical duplicate rows before merge {d.get('physical_duplicate_rows')}; "
        f"dead letters {r.get('dlq_records')}." + (f" Audit error: {d['error']}" if "error" in d else "")
        + ("" if d.get("drained", True) else f" **The pipeline had not drained after {r.get('drain', {}).get('seconds')} s "
           f"(lag {r.get('drain', {}).get('lag_after')}): missing points were still in flight, not necessarily lost.**"),
        f"**Sessions**: {r.get('sessions', {}).get('connected')}/{r.get('sessions', {}).get('devices')} connected in "
        f"{r.get('sessions', {}).get('connect_s')} s; provisioning {r.get('provisioning', {}).get('devices_per_s')} devices/s"
        + _tenants_clause(r.get("provisioning", {}))
        + (f"; {r['registration']['devices']} more devices registered (never connecting) at "
           f"{r['registration']['devices_per_s']} devices/s." if r.get("registration") else "."),
        f"**Bare Kafka** ({kb.get('record_bytes')} B records, connector producer settings): produce "
        f"{kb.get('produce_msg_s')} msg/s, produce→consume {kb.get('produce_consume_msg_s')} msg/s; "
        + (f"best stable pipeline rate {best} msg/s = {_ratio(best, kb.get('produce_consume_msg_s'))} of it."
           if best else _unstable_ratio(r, kb.get("produce_consume_msg_s"))),
        _stage_line(r),
        _ws_line(r),
        _projection_line(r),
    ]
    if r.get("max_stable_rate") is not None or cfg.get("find_max"):
        lines.append(f"**Maximum stable rate**: {r.get('max_stable_rate')} msg/s.")
    last = (r.get("steps") or [{}])[-1]
    if last.get("resources"):
        lines += ["", f"CPU (% of one core) and peak RSS per component, last step ({last.get('target_rate')} msg/s; "
                  f"machine CPU {last.get('machine_cpu_pct')}% of all cores):", "",
                  "| component | CPU mean % | CPU max % | peak RSS MB |", "|---|---|---|---|"]
        for name, v in sorted(last["resources"].items(), key=lambda kv: -kv[1]["cpu_pct_mean"]):
            lines.append(f"| {name} | {v['cpu_pct_mean']} | {v['cpu_pct_max']} | {v['peak_rss_mb']} |")
    if r.get("idle_cpu_pct"):
        lines += ["", "Idle CPU (% of one core; sessions connected, no load): "
                  + ", ".join(f"{k} {v}" for k, v in sorted(r["idle_cpu_pct"].items(), key=lambda kv: -kv[1]))]
        cpu = last.get("cpu_us_per_msg") or {}
        lines.append("Marginal CPU per message (µs; idle subtracted, divided by the records that component handled): "
                     + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
    from .resources_report import growth_lines, timeline_lines

    lines += growth_lines(r) + timeline_lines(r)
    if last.get("profile"):
        lines += ["", "Where the time goes (py-spy, last step; % of samples, own time):", ""]
        for name, prof in last["profile"].items():
            top = ", ".join(f"{f} {p}%" for f, p in prof["own"][:6])
            lines.append(f"- **{name}** ({prof['samples']} samples): {top}")
    return "\n".join(lines) + "\n"


def _la(la) -> str:
    return "/".join(f"{x:.2f}" for x in la) if la else "?"


def _ratio(a, b) -> str:
    return f"{a / b:.1%}" if a and b else "?"


def _ws_line(r: dict) -> str:
    w = r.get("websocket_probe") or {}
    if w.get("error") or not w:
        return f"**publish → WebSocket**: not measured ({w.get('error') or 'no probe'})."
    return (f"**publish → WebSocket**: `/v1/stream` subscribed to {w['devices']} probe devices; {w['events']} events, "
            f"{w['dropped']} dropped by the gateway's slow-client policy.")


def _projection_line(r: dict) -> str:
    steps = [s for s in r.get("steps", []) if s.get("projected_msg_s", {}).get("platform_only")]
    if not steps:
        return ""
    p = steps[-1]["projected_msg_s"]
    return (f"**CPU-cost projection** (last step; machine cores ÷ Σ CPU-seconds per accepted message, which a busy "
            f"shared machine distorts far less than throughput): platform alone {p['platform_only']} msg/s, "
            f"platform + generator {p['with_generator']} msg/s; one-core ceiling of each Python role "
            f"{p.get('python_role_ceiling')} msg/s.")


def _stage_line(r: dict) -> str:
    parts = []
    for s in r.get("steps", []):
        lat = s["latency_ms"]
        raw, val = lat.get("publish_to_kafka_produce") or {}, lat.get("publish_to_validated_produce") or {}
        if raw.get("count") and val.get("count"):
            part = (f"{s['target_rate']:g} msg/s: raw topic p50/p99 {raw['p50']:.0f}/{raw['p99']:.0f} ms, "
                    f"validated topic p50/p99 {val['p50']:.0f}/{val['p99']:.0f} ms")
            seen, floor = lat.get("publish_to_validated_observed") or {}, lat.get("publish_to_queryable_floor") or {}
            if seen.get("count"):
                part += f", validated read by a hot consumer p50/p99 {seen['p50']:.0f}/{seen['p99']:.0f} ms"
            if floor.get("count"):
                part += f", queryable no earlier than p50/p99 {floor['p50']:.0f}/{floor['p99']:.0f} ms"
            parts.append(part)
    return ("**Per stage** (record timestamps, i.e. when the connector and the validate agent produced; the "
            "table's publish→queryable is an upper bound, the lower bound here is the probe device's previous "
            "poll: resolution = probe devices × 0.1 s): " + "; ".join(parts) + ".") if parts else ""


def _unstable_ratio(r: dict, bare) -> str:
    """No stable step: still say how far each end got, against bare Kafka."""
    s = (r.get("steps") or [{}])[-1]
    secs = max(1e-3, s.get("seconds", 0) or 0)
    streams = (s.get("handled") or {}).get("streams", 0) / secs
    return (f"no stable step: the MQTT edge accepted {s.get('accepted_msg_s')} msg/s "
            f"({_ratio(s.get('accepted_msg_s'), bare)} of it) while the validate stage handled {streams:.0f} msg/s "
            f"({_ratio(streams, bare)}).")


def _tenants_clause(prov: dict) -> str:
    if not prov.get("tenants_seconds") and prov.get("tenants", 1) <= 1:
        return ""
    return (f" over {prov.get('tenants')} tenants (tenants created in {prov.get('tenants_seconds')} s, "
            f"{prov.get('tenants_per_s')}/s; probe devices in the first tenant)")
