"""The Markdown summary of a chaos run (the JSON beside it holds everything)."""

from __future__ import annotations

from fleetstream.sim.payloads import points_per_message


def markdown(r: dict) -> str:
    cfg, m, d = r["config"], r.get("machine", {}), r.get("delivery", {})
    la0, la1 = r.get("load_avg_start"), r.get("load_avg_end")
    lines = [
        f"# fleetstream chaos run — {cfg['label']} ({r.get('finished_utc')})",
        "",
        f"git `{r.get('git_rev')}`, {m.get('cores')} cores; load average {_la(la0)} at start, {_la(la1)} at end.",
        f"Load: {cfg['devices']} devices, {cfg['rate']:g} msg/s QoS{cfg['qos']} `{cfg['payload']}` ({points_per_message(cfg['payload'])} points/message). "
        f"Each round: {cfg['settle_s']:g} s steady, `kill -9` of one component, wait until it is back (at most "
        f"{cfg['recover_timeout_s']:g} s), {cfg['settle_s']:g} s steady. The supervisor restarts what dies; no "
        "human steps in.",
        "",
        "Seconds after the kill until: **restarted** the supervisor started it again; **healthy** the component "
        "answers its own check; **readyz** the gateway's `/readyz` is 200; **flowing** a reading sent after the "
        "kill is queryable; **live** such a reading arrives over a WebSocket; **all** a reading sent after the kill "
        "is queryable for every probe device (spread over the partitions: the killed process's share is carried "
        "again, by its restarted self or a surviving replica). Delivery counts the points "
        "acknowledged to devices during the round (all segments) against ClickHouse after the drain.",
        "",
        "| component | back | restarted | healthy | readyz | flowing | live | all | acked msgs | points expected | "
        "stored | lost | of which dead-lettered (messages by reason) | duplicated (query) | physical dup rows | "
        "rollup 1m / 1h differing buckets (points) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rnd in r.get("rounds", []):
        rec, dl, ru = rnd.get("recovery_s", {}), rnd.get("delivery", {}), rnd.get("rollups", {})
        lines.append(
            f"| {rnd['component']} | {'yes' if rnd.get('recovered') else '**no**'} | "
            + " | ".join(_s(rec.get(k)) for k in ("restarted", "healthy", "readyz", "flowing", "live", "all_flowing"))
            + f" | {dl.get('messages_acked')} | {dl.get('points_expected')} | {dl.get('points_stored')} | "
            f"{_bold(dl.get('lost_points'))} | {_reasons(rnd.get('dead_letters'))} | "
            f"{_bold(dl.get('duplicated_in_query'))} | "
            f"{dl.get('physical_duplicate_rows')} | "
            f"{_rollup(ru.get('1m'))} / {_rollup(ru.get('1h'))} |")
    lines += [
        "",
        f"**Total**: acknowledged {d.get('messages_acked')} messages, {d.get('points_expected')} points expected, "
        f"{d.get('points_stored')} stored, **lost {d.get('lost_points')}, duplicated in query results "
        f"{d.get('duplicated_in_query')}**, physical duplicate rows before merge {d.get('physical_duplicate_rows')}, "
        f"dead letters {r.get('dlq_records')}." + (f" Audit error: {d['error']}" if "error" in d else "")
        + ("" if d.get("drained", True) else f" **Not drained after {r.get('drain', {}).get('seconds')} s "
           f"(lag {r.get('drain', {}).get('lag_after')}).**"),
    ]
    if r.get("config", {}).get("replicas"):
        lines.insert(3, f"Replicas: {', '.join(f'{k} {v}' for k, v in r['config']['replicas'].items())} "
                        "(adr/0134); the gateway's queries and the audit above use replica 0's store.")
    for other in r.get("delivery_other_stores", []):
        tot = other.get("total", {})
        lines.append(f"**Store `{other['store']}`** (another gateway replica's): " + (
            f"error {other['error']}" if "error" in other else
            f"{tot.get('points_stored')} of {tot.get('points_expected')} points, **lost {tot.get('lost_points')}, "
            f"duplicated in query results {tot.get('duplicated_in_query')}**, physical duplicate rows "
            f"{tot.get('physical_duplicate_rows')}."))
    rollups = r.get("rollups") or {}
    for grain, s in rollups.get("summary", {}).items():
        if "error" in s:
            lines.append(f"**Rollup {grain}**: not checked ({s['error']}).")
            continue
        where = "; ".join(f"{_clock(b['bucket'])} {b['rollup_points'] - b['raw_points']:+d} "
                          f"({', '.join(b['components']) or 'no kill near it'})"
                          for b in rollups.get("buckets", {}).get(grain, []))
        lines.append(f"**Rollup {grain}** against raw (numeric points, FINAL): raw {s['raw_points']}, rollup "
                     f"{s['rollup_points']} (difference {s['difference']:+d}), {s['mismatched_buckets']} buckets "
                     f"differ" + (f": {where}." if where else "."))
    lines += _failovers(r.get("rounds", []))
    restarts = [e for e in r.get("supervisor_events", []) if e["event"] != "restarted"]
    if restarts:
        lines += ["", "Supervisor: " + "; ".join(
            f"{e['component']} {e['event']} (code {e.get('exit_code')}), restart after {e.get('restart_in_s')} s"
            for e in restarts)]
    return "\n".join(lines) + "\n"


def _failovers(rounds: list[dict]) -> list[str]:
    """A broker's failover (adr/0133): records/s before the kill and how long until it was back at 90 % of
    the offered rate; latency of every reading sent from the settle before the kill until the settle after."""
    rows = [rnd for rnd in rounds if rnd.get("failover")]
    if not rows:
        return []
    out = ["", "Broker failover: records/s into the raw topic (acknowledged produce) and committed by validate, "
                "in 3 s windows; **recovered** = seconds after the kill until the window rate was back at 90 % of "
                "the offered rate. Latency of every reading published from the settle before the kill to the "
                "settle after it.", "",
           "| component | raw before /s | raw lowest /s | raw recovered s | validated before /s | "
           "validated lowest /s | validated recovered s | publish→validated p50 / p99 / max ms | "
           "publish→raw append p99 ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    for rnd in rows:
        f = rnd["failover"]
        raw, val = f["throughput"]["raw"], f["throughput"]["validated"]
        lat, app = f["latency_ms"]["publish_to_validated"], f["latency_ms"]["publish_to_raw_append"]
        out.append(f"| {rnd['component']} | {raw['before_per_s']} | {raw['lowest_after_per_s']} | "
                   f"{_s(raw['recovered_after_s'])} | {val['before_per_s']} | {val['lowest_after_per_s']} | "
                   f"{_s(val['recovered_after_s'])} | {_ms(lat.get('p50'))} / {_ms(lat.get('p99'))} / "
                   f"{_ms(lat.get('max'))} | {_ms(app.get('p99'))} |")
    return out


def _ms(v) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _rollup(v: dict | None) -> str:
    if not v:
        return "–"
    return f"{v['mismatched_buckets']} ({v['difference']:+d})" if v["mismatched_buckets"] else "0"


def _clock(epoch: float) -> str:
    import time

    return time.strftime("%H:%M", time.gmtime(epoch)) + " UTC"


def _reasons(d: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) if d else "–"


def _s(v) -> str:
    return "**never**" if v is None else f"{v:g}"


def _bold(v) -> str:
    return f"**{v}**" if v else str(v)


def _la(la) -> str:
    return "/".join(f"{x:.2f}" for x in la) if la else "?"
