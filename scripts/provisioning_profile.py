"""Where provisioning time goes: the simulator's fleet path (``fleetstream.sim.fleet.provision`` ->
``Admin.create_devices``) on a throwaway stack (infra only: Postgres, Mosquitto, Kafka, registry), each step
timed by wrapping the function that does it, plus the broker's and Postgres' CPU over the run.

    .venv/bin/python scripts/provisioning_profile.py --devices 2000 --port-offset 2700

Not a test: it prints a table for bench/results (adr/0171)."""

from __future__ import annotations

import argparse
import collections
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetstream.bench.config import BenchConfig  # noqa: E402
from fleetstream.bench.runner import bench_settings  # noqa: E402

SPENT: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.defaultdict(int)


def timed(owner, attr: str, label: str) -> None:
    fn = getattr(owner, attr, None)
    if fn is None:  # the code being profiled has no such step (older or newer than this script)
        return

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            SPENT[label] += time.perf_counter() - t0
            CALLS[label] += 1

    setattr(owner, attr, wrapper)


def instrument() -> None:
    import gateway.admin as admin_mod
    import gateway.identity.certificates as certs
    import gateway.identity.provisioning as prov
    from gateway.broker.dynsec import DynSecAdmin
    from gateway.outbox import Outbox
    from runtime import pki

    timed(prov, "create_devices", "rows + broker + outbox wait (create_devices)")
    timed(prov.devices_crud, "create_device", "  row insert (per device)")
    timed(prov.devices_crud, "insert_new_devices", "  row inserts (per chunk, pipelined)")
    timed(prov, "enqueue_new_device", "  registry entry into the outbox (per device)")
    timed(prov, "enqueue_new_devices", "  registry entries into the outbox (per chunk, pipelined)")
    timed(DynSecAdmin, "authorise_devices", "  broker authorisation (per chunk)")
    timed(Outbox, "wait", "  outbox relay to Kafka (wait)")
    timed(prov, "issue_certificates", "certificates (issue_certificates)")
    timed(certs, "new_key", "  key generation (per device)")
    timed(pki.Issuer, "sign", "  signing (per device)")
    timed(prov.creds_crud, "add_certificate", "  certificate row (per device)")
    timed(prov.creds_crud, "add_certificates", "  certificate rows (per chunk, pipelined)")
    timed(admin_mod, "write_private", "files: private key (per device)")


def cpu_s(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=500)
    p.add_argument("--port-offset", type=int, default=0)
    a = p.parse_args()

    from fleetstream.sim.fleet import provision
    from fleetstream.stack.supervisor import Stack

    data = Path(tempfile.mkdtemp(prefix="fleetstream-provprof-"))
    s = bench_settings(BenchConfig(port_offset=a.port_offset), data)
    stack = Stack(s)
    try:
        stack.start_infra()
        instrument()
        pids = {c.name: c.pid for c in stack.children}
        cpu0 = {n: cpu_s(pid) for n, pid in pids.items()}
        marks = []
        own0 = time.process_time()
        t0 = time.monotonic()
        _, took = provision(s, a.devices, out_dir=data / "fleet", prefix="prof", chunk=a.chunk,
                            progress=lambda d, n: marks.append((d, time.monotonic() - t0)))
        own = time.process_time() - own0
        cpu = {n: round(cpu_s(pid) - cpu0[n], 1) for n, pid in pids.items()}
    finally:
        stack.stop(hard=True)
        shutil.rmtree(data, ignore_errors=True)
        s.master_key_path.unlink(missing_ok=True)
    print(f"\n{a.devices} devices in {took:.1f} s = {a.devices / took:.0f} devices/s (chunks of {a.chunk}); "
          f"load average {os.getloadavg()[0]:.2f}")
    print("\n| step | seconds | share of wall | calls |\n|---|---:|---:|---:|")
    for label, spent in SPENT.items():
        print(f"| {label} | {spent:.2f} | {100 * spent / took:.0f} % | {CALLS[label]} |")
    print(f"\nCPU-seconds of this (provisioning) process: {own:.1f} = {a.devices / own:.0f} devices per CPU-second")
    print("CPU-seconds of the stack's processes during provisioning:", cpu)
    step = max(1, len(marks) // 10)
    print("devices provisioned over time (devices, s):", [(d, round(t, 1)) for d, t in marks[::step]])


if __name__ == "__main__":
    main()
