"""Sent vs stored, counted in ClickHouse itself after the gateway (the chdb owner) has stopped.

Run as ``python -m fleetstream.bench.audit DSN TENANT``: chdb allows one process per data path, so the
count runs in a short-lived process of its own and prints JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys


def count_stored(dsn: str, tenant_ids: list[str]) -> dict:
    """Rows and distinct points per device over all ``tenant_ids`` (the bench's device ids are unique across
    its tenants)."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        per_device = client.query(
            "SELECT device_id, count(), uniqExact(metric, ts) FROM fleetstream.telemetry FINAL "
            "WHERE tenant_id IN {t:Array(String)} GROUP BY device_id", parameters={"t": tenant_ids}).result_rows
        physical = client.command("SELECT count() FROM fleetstream.telemetry WHERE tenant_id IN {t:Array(String)}",
                                  parameters={"t": tenant_ids})
    finally:
        client.close()
    return {"per_device": {d: [int(rows), int(distinct)] for d, rows, distinct in per_device},
            "physical_rows": int(physical)}


def count_windows(dsn: str, tenant_id: str, windows: list[list[int]]) -> dict:
    """Per send-time window ``[first_ms, last_ms]``: each device's rows and distinct points (FINAL), and
    the physical rows; plus the rollup check (``rollups``)."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    out: dict = {"windows": []}
    try:
        for lo, hi in windows:
            p = {"t": tenant_id, "lo": lo, "hi": hi}
            where = "tenant_id = {t:String} AND ts BETWEEN fromUnixTimestamp64Milli({lo:Int64}) " \
                    "AND fromUnixTimestamp64Milli({hi:Int64})"
            rows = client.query(f"SELECT device_id, count(), uniqExact(metric, ts) FROM fleetstream.telemetry FINAL "
                                f"WHERE {where} GROUP BY device_id", parameters=p).result_rows
            physical = client.command(f"SELECT count() FROM fleetstream.telemetry WHERE {where}", parameters=p)
            out["windows"].append({"per_device": {d: [int(r), int(u)] for d, r, u in rows},
                                   "physical": int(physical)})
        out["rollups"] = {grain: _rollup_vs_raw(client, tenant_id, grain, fn) for grain, fn in ROLLUPS}
    finally:
        client.close()
    return out


# rollup table suffix and the function that buckets a raw timestamp the same way (sinks/clickhouse/schema.py)
ROLLUPS = (("1m", "toStartOfMinute"), ("1h", "toStartOfHour"))


def _rollup_vs_raw(client, tenant_id: str, grain: str, bucket_fn: str) -> dict:
    """Numeric points per (device, metric, bucket) in raw (FINAL) against the rollup table's own rows (FINAL:
    one row per bucket, recomputed from raw, adr/0114), read after the drain, when the sink has refreshed
    them; the buckets that differ, summed over devices and metrics per bucket."""
    try:
        rows = client.query(
            f"""SELECT toUnixTimestamp(b), count(), sum(raw), sum(rolled) FROM (
                  SELECT device_id, metric, b, sum(raw) AS raw, sum(rolled) AS rolled FROM (
                    SELECT device_id, metric, {bucket_fn}(ts) AS b, count() AS raw, 0 AS rolled
                    FROM fleetstream.telemetry FINAL WHERE tenant_id = {{t:String}} AND value_num IS NOT NULL
                    GROUP BY device_id, metric, b
                    UNION ALL
                    SELECT device_id, metric, bucket AS b, 0 AS raw, sum(count_v) AS rolled
                    FROM fleetstream.telemetry_{grain} FINAL WHERE tenant_id = {{t:String}}
                    GROUP BY device_id, metric, b)
                  GROUP BY device_id, metric, b HAVING raw != rolled)
                GROUP BY b ORDER BY b""", parameters={"t": tenant_id}).result_rows
        totals = client.query(
            f"""SELECT (SELECT count() FROM fleetstream.telemetry FINAL
                        WHERE tenant_id = {{t:String}} AND value_num IS NOT NULL),
                       (SELECT sum(count_v) FROM fleetstream.telemetry_{grain} FINAL WHERE tenant_id = {{t:String}})""",
            parameters={"t": tenant_id}).result_rows[0]
    except Exception as exc:  # the rollups' shape is another module's to change: report, do not fail the run
        return {"error": repr(exc)[:300]}
    return {"raw_points": int(totals[0]), "rollup_points": int(totals[1]),
            "mismatched": [[int(b), int(n), int(r), int(c)] for b, n, r, c in rows]}


def attribute_rollups(rollups: dict, rounds: list[dict]) -> dict:
    """A summary per grain, and each differing bucket with the components killed during it or within a
    minute after it ended (a kill re-delivers readings sent shortly before it); per round, the buckets so
    given to it and their difference."""
    seconds = {"1m": 60, "1h": 3600}
    out: dict = {"summary": {}, "buckets": {}}
    for grain, r in rollups.items():
        if "error" in r:
            out["summary"][grain] = {"error": r["error"]}
            continue
        out["summary"][grain] = {"raw_points": r["raw_points"], "rollup_points": r["rollup_points"],
                                 "difference": r["rollup_points"] - r["raw_points"],
                                 "mismatched_buckets": len(r["mismatched"])}
        out["buckets"][grain] = []
        for rnd in rounds:
            rnd.setdefault("rollups", {})[grain] = {"mismatched_buckets": 0, "difference": 0}
        for bucket, _series, raw, rolled in r["mismatched"]:
            kills = [rnd for rnd in rounds
                     if "killed_at" in rnd and bucket <= rnd["killed_at"] < bucket + seconds[grain] + 60]
            out["buckets"][grain].append({"bucket": bucket, "raw_points": raw, "rollup_points": rolled,
                                          "components": [k["component"] for k in kills]})
            for k in kills:
                k["rollups"][grain]["mismatched_buckets"] += 1
                k["rollups"][grain]["difference"] += rolled - raw
    return out


def count_in_subprocess(dsn: str, tenant_id: str, windows: list[list[int]], timeout: float = 600) -> dict:
    out = subprocess.run([sys.executable, "-m", "fleetstream.bench.audit", dsn, tenant_id, json.dumps(windows)],
                         capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout)


def count_stored_in_subprocess(dsn: str, tenant_ids: str | list[str], timeout: float = 300) -> dict:
    ids = [tenant_ids] if isinstance(tenant_ids, str) else tenant_ids
    # the tenant list on stdin: a thousand tenant ids would make a long command line
    out = subprocess.run([sys.executable, "-m", "fleetstream.bench.audit", dsn, "-"], input=json.dumps(ids),
                         capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout)


def compare(sent: dict[str, list[int]], stored: dict, points_per_message: int) -> dict:
    """``sent``: device → [published, acknowledged, first_ts, last_ts] from the generator."""
    lost = extra = dup = distinct_total = rows_total = 0
    devices_missing = 0
    for dev, (published, acked, _first, _last) in sent.items():
        rows, distinct = stored["per_device"].get(dev, [0, 0])
        rows_total += rows
        distinct_total += distinct
        dup += rows - distinct
        lost += max(0, acked * points_per_message - distinct)
        extra += max(0, distinct - published * points_per_message)
        devices_missing += acked > 0 and distinct == 0
    acked_points = sum(v[1] for v in sent.values()) * points_per_message
    return {"messages_published": sum(v[0] for v in sent.values()),
            "messages_acked": sum(v[1] for v in sent.values()),
            "points_expected": acked_points, "points_stored": distinct_total, "rows_in_query": rows_total,
            "lost_points": lost, "duplicated_in_query": dup, "unexpected_points": extra,
            "devices_missing": devices_missing,
            "physical_duplicate_rows": stored["physical_rows"] - distinct_total}


if __name__ == "__main__":
    if len(sys.argv) > 3:
        print(json.dumps(count_windows(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
    else:
        ids = json.loads(sys.stdin.read()) if sys.argv[2] == "-" else [sys.argv[2]]
        print(json.dumps(count_stored(sys.argv[1], ids)))
