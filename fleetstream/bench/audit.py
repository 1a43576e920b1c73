"""Sent vs stored, counted in ClickHouse itself after the gateway (the chdb owner) has stopped.

Run as ``python -m fleetstream.bench.audit DSN TENANT``: chdb allows one process per data path, so the
count runs in a short-lived process of its own and prints JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys


def count_stored(dsn: str, tenant_id: str) -> dict:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        per_device = client.query(
            "SELECT device_id, count(), uniqExact(metric, ts) FROM fleetstream.telemetry FINAL "
            "WHERE tenant_id = {t:String} GROUP BY device_id", parameters={"t": tenant_id}).result_rows
        physical = client.command("SELECT count() FROM fleetstream.telemetry WHERE tenant_id = {t:String}",
                                  parameters={"t": tenant_id})
    finally:
        client.close()
    return {"per_device": {d: [int(rows), int(distinct)] for d, rows, distinct in per_device},
            "physical_rows": int(physical)}


def count_stored_in_subprocess(dsn: str, tenant_id: str, timeout: float = 300) -> dict:
    out = subprocess.run([sys.executable, "-m", "fleetstream.bench.audit", dsn, tenant_id], capture_output=True,
                         text=True, timeout=timeout, check=True)
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
    print(json.dumps(count_stored(sys.argv[1], sys.argv[2])))
