"""The report's resource sections: RSS growth per component (first vs last minute), the resource timeline, and the
idle run's own report (``fleetstream bench --idle``)."""

from __future__ import annotations

MAX_ROWS = 40  # timeline rows in the Markdown (every row stays in the JSON)


def growth_lines(r: dict) -> list[str]:
    g = r.get("rss_growth") or {}
    if not g:
        return []
    span = max(v["span_s"] for v in g.values())
    w = max(v.get("window_s", 60) for v in g.values())
    lines = ["", f"RSS per component over the run ({span} s sampled every second; mean of the first and of the last "
             f"{w} s — a component that keeps growing shows here and in the timeline):", "",
             "| component | first window MB | last window MB | growth MB | growth % | peak MB |", "|---|---:|---:|---:|---:|---:|"]
    for name, v in sorted(g.items(), key=lambda kv: -kv[1]["last_mb"]):
        pct = "–" if v["growth_pct"] is None else f"{v['growth_pct']:+.1f}"
        lines.append(f"| {name} | {v['first_mb']} | {v['last_mb']} | {v['growth_mb']:+.1f} | {pct} | {v['peak_mb']} |")
    return lines


def timeline_lines(r: dict) -> list[str]:
    rows = r.get("resources_timeline") or []
    if len(rows) < 2:
        return []
    names = sorted({n for row in rows for n in row["rss_mb"]})
    step = -(-len(rows) // MAX_ROWS)
    shown = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    lines = ["", f"Resource timeline (RSS MB per component; CPU % of one core over the preceding interval, all "
             f"components; {len(rows)} rows in the JSON, every {step}. shown):", "",
             "| t s | " + " | ".join(names) + " | CPU % total |", "|---:|" + "---:|" * (len(names) + 1)]
    for row in shown:
        cpu = row.get("cpu_pct")
        lines.append(f"| {row['t']} | " + " | ".join(str(row["rss_mb"].get(n, "–")) for n in names)
                     + f" | {round(sum(cpu.values()), 1) if cpu else '–'} |")
    return lines


def idle_markdown(r: dict) -> str:
    from .report import _la

    cfg, m, i = r["config"], r.get("machine", {}), r.get("idle", {})
    reg = r.get("registration") or {}
    lines = [
        f"# fleetstream benchmark — idle ({r.get('finished_utc')})", "",
        f"git `{r.get('git_rev')}`, {m.get('cores')} cores, {m.get('memory_gb')} GiB, open files {m.get('ulimit_nofile')}; "
        f"load average {_la(r.get('load_avg_start'))} at start, {_la(r.get('load_avg_end'))} at end (other processes on "
        f"the machine count against every number; machine CPU in the window {i.get('machine_cpu_pct')} % of all cores).",
        f"Fleet: {cfg['devices']} devices connected (one MQTT/TLS session each, keepalive 120 s, nothing published), "
        f"{max(cfg['devices'], cfg.get('registered') or 0)} registered"
        + (f" ({reg['devices']} registered without certificates at {reg['devices_per_s']} devices/s)" if reg else "")
        + f"; provisioning {r.get('provisioning', {}).get('devices_per_s')} devices/s; sessions connected in "
        f"{r.get('sessions', {}).get('connect_s')} s.", "",
        f"**Idle window**: {i.get('seconds')} s after {cfg.get('idle_settle_s')} s of settling; {i.get('connected')} "
        f"sessions connected, {i.get('disconnects_during')} disconnects during it. **Stack CPU in total: "
        f"{i.get('stack_cpu_pct_total')} % of one core** (target < 25 % at 10,000 devices); stack RSS in total "
        f"{i.get('stack_rss_mb_total')} MB.", "",
        "| component | CPU % of one core (idle window) | RSS MB at the end |", "|---|---:|---:|"]
    cpu, rss = i.get("cpu_pct", {}), i.get("rss_mb_end", {})
    for name in sorted(cpu, key=lambda n: -cpu[n]):
        lines.append(f"| {name} | {cpu[name]} | {rss.get(name, '–')} |")
    lines += growth_lines(r) + timeline_lines(r)
    return "\n".join(lines) + "\n"
