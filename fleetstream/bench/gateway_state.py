"""What the gateway's in-memory state view costs (adr/0137): shadows, command states and alerts of N devices,
fed through ``StreamsClient._apply`` as Avro records exactly as the compacted-topic follower hands them over,
measured as Python heap kept (tracemalloc) and resident-set growth, each kind in a fresh process.

    python -m fleetstream.bench.gateway_state --devices 100000 [--commands-per-device 3]
        [--finished-per-device 20] [--out bench/results]

``--commands-per-device`` finished commands are sent per device; the view holds at most
``--finished-per-device`` of them (the gateway's bound, adr/0192), so memory stops growing with commands sent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

KINDS = ("shadows", "commands", "alerts")


def _records(kind: str, devices: int, per_device: int):
    """(topic, value) pairs shaped like the platform's: a shadow with a few desired and reported values, a
    finished command with its history, an alert with its details."""
    from schemas import codec, topics

    tenants = [str(uuid.UUID(int=t + 1)) for t in range(max(1, devices // 1000))]  # 1,000 devices a tenant
    now = int(time.time() * 1000)
    for i in range(devices):
        tenant, device = tenants[i % len(tenants)], f"device-{i:07d}"
        if kind == "shadows":
            desired = {"setpoint": 21.5, "mode": "eco", "interval_s": 60}
            reported = {"setpoint": 21.0, "mode": "eco", "interval_s": 60, "firmware": "1.4.2", "rssi": -67}
            yield topics.SHADOWS.name, codec("shadow_document").encode({
                "tenant_id": tenant, "device_id": device, "version": 7, "desired_json": json.dumps(desired),
                "reported_json": json.dumps(reported), "delta_json": json.dumps({"setpoint": 21.5}),
                "metadata_json": json.dumps({"desired": {k: {"ts": now} for k in desired},
                                             "reported": {k: {"ts": now} for k in reported}}),
                "time": now, "publish_delta": False, "request_id": None, "outcome": None})
        elif kind == "commands":
            for c in range(per_device):
                history = [["queued", now], ["sent", now + 5], ["acknowledged", now + 80], ["succeeded", now + 90]]
                yield topics.COMMAND_STATES.name, codec("command_state").encode({
                    "tenant_id": tenant, "device_id": device, "command_id": str(uuid.UUID(int=i * 100 + c)),
                    "name": "set-rate", "params_json": json.dumps({"hz": 5}), "status": "succeeded",
                    "attempt": 1, "max_attempts": 3, "created_at": now, "updated_at": now + 90,
                    "timeout_ms": 30_000, "expires_at": None, "idempotency_key": None, "protocol": "mqtt",
                    "result_json": json.dumps({"applied": {"hz": 5}}), "reason": None,
                    "history_json": json.dumps(history)})
        else:
            yield topics.ALERTS.name, codec("alert").encode({
                "tenant_id": tenant, "alert_id": str(uuid.UUID(int=i + 1)), "rule_id": str(uuid.UUID(int=7)),
                "device_id": device, "severity": "MAJOR", "state": "ACTIVE", "time": now,
                "message": "temperature above 80", "details_json": json.dumps({"temperature": 95.0})})


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def measure(kind: str, devices: int, per_device: int, finished_cap: int | None = None) -> dict:
    """In this process: the state a gateway holds for ``devices`` devices of one kind."""
    import gc

    from gateway.streams_client import FINISHED_PER_DEVICE, StreamsClient
    from schemas.codec import bind_local_ids

    bind_local_ids()
    finished_cap = FINISHED_PER_DEVICE if finished_cap is None else finished_cap

    def fresh():
        view = StreamsClient.__new__(StreamsClient)  # the view's dicts and _apply only; no Kafka clients
        view._init_view(finished_per_device=finished_cap)
        return view

    records = list(_records(kind, devices, per_device))  # encoded up front: only what _apply keeps is counted
    wire_bytes = sum(len(v) for _, v in records)
    # pass 1, untraced: the apply rate and the resident-set growth
    gc.collect()
    rss0 = _rss_kib()
    view = fresh()
    t0 = time.perf_counter()
    for topic, value in records:
        view._apply(topic, None, bytes(bytearray(value)))
    took = time.perf_counter() - t0
    rss_growth = (_rss_kib() - rss0) * 1024
    t0 = time.perf_counter()
    reads = _read_all(kind, view)
    read_took = time.perf_counter() - t0
    del view
    gc.collect()
    # pass 2, traced: the Python heap the view keeps
    view = fresh()
    tracemalloc.start()
    for topic, value in records:
        # a fresh bytes object per record, as each Kafka message's value() is: what the view keeps of it counts
        view._apply(topic, None, bytes(bytearray(value)))
    heap, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = {"shadows": len(view.shadows), "commands": sum(len(v) for v in view.commands.values()),
            "alerts": sum(len(v) for v in view.alerts.values())}[kind]
    return {"kind": kind, "devices": devices, "records": len(records), "held": held, "wire_bytes": wire_bytes,
            "finished_per_device": finished_cap if kind == "commands" else None,
            "heap_bytes_per_100k_devices": round(heap * 100_000 / devices),
            "heap_bytes": heap, "heap_bytes_per_record": round(heap / max(1, held)),
            "rss_growth_bytes": rss_growth, "apply_s": round(took, 2),
            "apply_records_per_s": round(len(records) / took), "read_records_per_s": round(reads / read_took)}


def _read_all(kind: str, view) -> int:
    """Every held record read back the way the API reads it; returns how many."""
    n = 0
    if kind == "shadows":
        for tenant, device in list(view.shadows):
            n += view.shadow(tenant, device) is not None
    elif kind == "commands":
        for tenant, device in list(view.commands):
            n += len(view.device_commands(tenant, device))
    else:
        read = getattr(view, "tenant_alerts", None) or (lambda t: list(view.alerts.get(t, {}).values()))
        for tenant in list(view.alerts):
            n += len(read(tenant))
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--commands-per-device", type=int, default=3, help="finished commands sent per device")
    p.add_argument("--finished-per-device", type=int, default=None,
                   help="finished commands the view holds per device (default: the gateway's)")
    p.add_argument("--kind", choices=KINDS, help="measure one kind in this process (used by the full run)")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--label", default="", help="suffix of the result files (e.g. before)")
    a = p.parse_args(argv)
    if a.kind:
        print(json.dumps(measure(a.kind, a.devices, a.commands_per_device, a.finished_per_device)))
        return 0
    rows = []
    for kind in KINDS:  # each in a fresh interpreter: nothing of one kind's heap is counted for another
        out = subprocess.run([sys.executable, "-m", "fleetstream.bench.gateway_state", "--kind", kind,
                              "--devices", str(a.devices), "--commands-per-device", str(a.commands_per_device),
                              *(["--finished-per-device", str(a.finished_per_device)]
                                if a.finished_per_device is not None else [])],
                             check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path = Path(a.out) / f"{day}-gateway-state-memory{'-' + a.label if a.label else ''}"
    path.parent.mkdir(parents=True, exist_ok=True)
    total = sum(r["heap_bytes"] for r in rows)
    report = {"devices": a.devices, "commands_per_device": a.commands_per_device, "rows": rows,
              "total_heap_bytes": total, "cores": os.cpu_count(), "python": sys.version.split()[0],
              "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Gateway state view: memory for {a.devices:,} devices ({report['finished_utc']})", "",
          "`python -m fleetstream.bench.gateway_state --devices "
          f"{a.devices} --commands-per-device {a.commands_per_device}`: records shaped like the platform's "
          "(a shadow with 3 desired and 5 reported values; finished commands with their history; one ACTIVE "
          "alert per device), applied through `StreamsClient._apply` as the compacted-topic follower does. "
          "Heap = what tracemalloc still holds after applying; each kind in its own process.", "",
          "| kind | records held | Avro bytes in | heap held | per record | RSS growth | apply rate | read rate |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['kind']} | {r['held']:,} | {r['wire_bytes'] / 2**20:.1f} MiB | "
                  f"{r['heap_bytes'] / 2**20:.1f} MiB | {r['heap_bytes_per_record']:,} B | "
                  f"{r['rss_growth_bytes'] / 2**20:.1f} MiB | {r['apply_records_per_s']:,}/s | "
                  f"{r['read_records_per_s']:,}/s |")
    md += ["", f"**Total heap for {a.devices:,} devices: {total / 2**20:.0f} MiB per gateway replica** "
           "(every replica holds the whole view, adr/0050; adr/0137 decides what changes)."]
    path.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"written: {path}.json (+ .md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
