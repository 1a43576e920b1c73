"""Capacity model: from per-instance figures (ops/measured.json) to a sizing table for a fleet size.

    python ops/capacity.py                      # the table for 100 / 10k / 100k / 500k devices (Markdown)
    python ops/capacity.py --devices 250000 --json
    python ops/capacity.py --write ops/capacity.md

Every figure in measured.json says whether it was measured here, is a vendor figure, or is still a
placeholder ("to-be-measured"); the table lists the placeholders it depends on, so nobody mistakes a
guess for a measurement (adr/0096).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCALES = [100, 10_000, 100_000, 500_000]


def load(path: Path = HERE / "measured.json") -> dict:
    return json.loads(path.read_text())


def v(m: dict, section: str, key: str) -> float:
    return m[section][key]["value"]


def placeholders(m: dict) -> list[str]:
    return sorted(f"{s}.{k}" for s, d in m.items() if isinstance(d, dict) for k, f in d.items()
                  if isinstance(f, dict) and f.get("status") == "to-be-measured")


def _ceil(x: float) -> int:
    return max(1, math.ceil(x - 1e-9))


def _round_up(x: int, multiple: int) -> int:
    return multiple * math.ceil(x / multiple)


def size(devices: int, m: dict) -> dict:
    """One row. Production rows (>= 10k devices) add HA minimums (N+1, three AZs, two replicas)."""
    ha = devices >= 10_000
    head = v(m, "workload", "headroom")
    rate = devices / v(m, "workload", "reading_interval_s") * v(m, "workload", "peak_factor")
    mb_s = rate * v(m, "workload", "record_bytes") / 1e6

    connectors = _ceil(rate / (v(m, "connector_mqtt", "msgs_per_s") * head)) + (1 if ha else 0)
    workers = _ceil(rate / (v(m, "streams_worker", "msgs_per_s") * head))
    sinks = _ceil(rate / (v(m, "sink", "msgs_per_s") * head))
    if ha:
        workers, sinks = max(workers, 2), max(sinks, 2)
    # partitions: enough for the throughput per partition AND for the largest consumer group, with room
    # to double the group without repartitioning (keys are tenant:device, so a repartition moves devices)
    by_throughput = _ceil(rate / (v(m, "kafka", "partition_msgs_per_s") * head))
    partitions = max(6, by_throughput, 2 * max(workers, sinks))
    partitions = _round_up(partitions, 6) if partitions <= 48 else _round_up(partitions, 24)
    brokers = 1 if not ha else max(3, _round_up(
        _ceil(mb_s * 2 * v(m, "kafka", "replication_factor") / (v(m, "kafka", "broker_write_mb_per_s") * head)), 3))
    # telemetry.raw + telemetry are both written; the ClickHouse insert rate is the validated stream
    shards = _ceil(rate / (v(m, "clickhouse", "insert_rows_per_s_per_shard") * head))
    stored_gb = (rate / v(m, "workload", "peak_factor")) * 86400 * v(m, "clickhouse", "retention_days") \
        * v(m, "clickhouse", "compressed_bytes_per_message") / 1e9
    shards = max(shards, _ceil(stored_gb / (v(m, "clickhouse", "disk_per_shard_gb") * head)))
    replicas = 2 if ha else 1
    emqx = max(_ceil(devices / (v(m, "emqx", "connections_per_node") * head)),
               _ceil(rate / (v(m, "emqx", "msgs_per_node") * head)))
    emqx = max(3, emqx + 1) if ha else emqx
    # every connector process and every streams worker holds the whole device registry in memory (issue 18:
    # RSS grows linearly with registered devices, connected or not): memory per process, not per replica set
    connector_mb = devices * v(m, "connector_mqtt", "rss_kb_per_registered_device") / 1024
    worker_mb = devices * v(m, "streams_worker", "rss_kb_per_registered_device") / 1024
    return {"devices": devices, "msgs_per_s_peak": round(rate), "ingress_mb_per_s": round(mb_s, 2),
            "kafka_partitions_per_topic": partitions, "kafka_brokers": brokers,
            "connector_instances": connectors, "faust_workers": workers, "sink_instances": sinks,
            "clickhouse_shards": shards, "clickhouse_replicas": replicas, "clickhouse_stored_gb": round(stored_gb),
            "emqx_nodes": emqx, "connector_registry_mb": round(connector_mb),
            "worker_registry_mb": round(worker_mb), "deployment": "one box (fleetstream up)" if not ha else "Kubernetes (helm/fleetstream)"}


COLUMNS = [("devices", "Devices"), ("msgs_per_s_peak", "Peak msg/s"), ("ingress_mb_per_s", "MB/s"),
           ("kafka_partitions_per_topic", "Partitions/topic"), ("kafka_brokers", "Kafka brokers"),
           ("connector_instances", "MQTT connectors"), ("faust_workers", "Faust workers"),
           ("sink_instances", "Sinks"), ("clickhouse_shards", "CH shards"), ("clickhouse_replicas", "CH replicas"),
           ("clickhouse_stored_gb", "CH GB stored"), ("emqx_nodes", "EMQX nodes"),
           ("connector_registry_mb", "Registry MB per connector"), ("worker_registry_mb", "Registry MB per worker"),
           ("deployment", "Runs on")]


def markdown(rows: list[dict], m: dict) -> str:
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k, _ in COLUMNS) + " |")
    ph = placeholders(m)
    out.append("")
    out.append("Placeholders this table depends on (status `to-be-measured` in ops/measured.json): "
               + (", ".join(f"`{p}`" for p in ph) if ph else "none") + ".")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, action="append", help="fleet size (repeatable); default 100/10k/100k/500k")
    p.add_argument("--measured", type=Path, default=HERE / "measured.json")
    p.add_argument("--json", action="store_true")
    p.add_argument("--write", type=Path, help="write the Markdown page (ops/capacity.md)")
    a = p.parse_args(argv)
    m = load(a.measured)
    rows = [size(n, m) for n in (a.devices or SCALES)]
    if a.json:
        print(json.dumps({"rows": rows, "placeholders": placeholders(m)}, indent=2))
        return 0
    table = markdown(rows, m)
    if a.write:
        template = (HERE / "capacity.md.in").read_text()
        a.write.write_text(template.replace("{{TABLE}}", table))
        print(f"wrote {a.write}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
