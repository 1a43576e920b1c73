"""The scaling table (issue 18) from `fleetstream bench` JSON reports, one row each:

    python -m fleetstream.bench.scaling_table T1=report1.json T1000=report2.json ...

Per row: the run's shape (tenants, connected, registered), the machine's load, the step's CPU µs per message
(marginal per component, and gross: all platform CPU ÷ accepted messages), the probes' p50/p99 with their sample
counts; then provisioning times, RSS before load and at peak, delivery and idle CPU."""

from __future__ import annotations

import json
import sys

CPU = ["connector-mqtt", "streams", "gateway", "kafka", "mosquitto", "postgres"]
IDLE = ["kafka", "streams", "gateway", "connector-mqtt", "mosquitto"]
RSS = ["streams", "gateway", "connector-mqtt", "connector-coap", "mosquitto", "kafka", "postgres"]
NOT_PLATFORM = ("bench-probes", "load-generator")


def _f(x, nd: int = 0) -> str:
    return "–" if x is None else f"{x:,.{nd}f}"


def cost_table(rows: list[tuple[str, dict]]) -> list[str]:
    out = ["| row | tenants | connected | registered | load 1-min start / step end / run end | machine CPU % | "
           "accepted msg/s | " + " | ".join(f"{c} µs" for c in CPU) + " | platform µs | platform gross µs | "
           "generator µs | p50/p99 →WS ms (n) | p50/p99 →queryable ms (n) |",
           "|" + "---|" * (7 + len(CPU) + 5)]
    for label, r in rows:
        c, s = r["config"], r["steps"][0]
        cpu = s["cpu_us_per_msg"]
        plat = sum(v for k, v in cpu.items() if k not in NOT_PLATFORM)
        gross = sum(v["cpu_pct_mean"] for k, v in s["resources"].items() if k not in NOT_PLATFORM) \
            * 1e4 / max(1, s["accepted_msg_s"])
        ws, q = s["latency_ms"]["publish_to_websocket"] or {}, s["latency_ms"]["publish_to_queryable"]
        out.append(
            f"| {label} | {c.get('tenants', 1):,} | {c['devices']:,} | {max(c['devices'], c.get('registered') or 0):,} | "
            f"{r['load_avg_start'][0]:.1f} / {s['load_avg'][0]:.1f} / {r['load_avg_end'][0]:.1f} | "
            f"{s['machine_cpu_pct']} | {s['accepted_msg_s']:,} | " + " | ".join(_f(cpu.get(k)) for k in CPU)
            + f" | {plat:.0f} | {gross:.0f} | {_f(cpu.get('load-generator'))} | "
            f"{_f(ws.get('p50'))}/{_f(ws.get('p99'))} ({ws.get('count')}) | "
            f"{_f(q.get('p50'))}/{_f(q.get('p99'))} ({q.get('count')}) |")
    return out


def resource_table(rows: list[tuple[str, dict]]) -> list[str]:
    out = ["| row | tenants created s | devices provisioned s (/s) | registered s (/s) | sessions connected s | "
           + " | ".join(f"{k} RSS MB before load / peak" for k in RSS)
           + " | delivery lost/dup | idle CPU % " + " / ".join(IDLE) + " |",
           "|" + "---|" * (7 + len(RSS))]
    for label, r in rows:
        p, reg, tl = r["provisioning"], r.get("registration") or {}, r.get("resources_timeline") or [{}]
        first, peak, d = tl[0].get("rss_mb", {}), r["resources_whole_run"], r.get("delivery", {})
        out.append(
            f"| {label} | {p.get('tenants_seconds')} | {p['seconds']} ({p['devices_per_s']}) | "
            f"{reg.get('seconds', '–')} ({reg.get('devices_per_s', '–')}) | {r['sessions']['connect_s']} | "
            + " | ".join(f"{_f(first.get(k))} / {_f(peak.get(k, {}).get('peak_rss_mb'))}" for k in RSS)
            + f" | {d.get('lost_points')}/{d.get('duplicated_in_query')} | "
            + " / ".join(_f(r.get("idle_cpu_pct", {}).get(k), 1) for k in IDLE) + " |")
    return out


def main(argv: list[str]) -> None:
    rows = []
    for arg in argv:
        label, path = arg.split("=", 1)
        with open(path) as fh:
            rows.append((label, json.load(fh)))
    print("\n".join([*cost_table(rows), "", *resource_table(rows)]))


if __name__ == "__main__":
    main(sys.argv[1:])
