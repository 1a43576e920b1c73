"""Where a local stack's start-up time goes (issue 20): starts the whole stack the way a test session does
(``Stack.start_infra`` then ``start_platform``, the test suite's ports plus an offset, a fresh temp data dir),
prints each step's start and end (``Stack.steps``) and the load average, kills it (``stop(hard=True)``, as the
suite does) and removes its data dir; N times. A script, not a test: nothing here asserts a number.

Usage: .venv/bin/python scripts/measure_startup.py [--runs 3] [--port-offset 1800] [--infra-only] [--cluster] [--keep]
[--json FILE]; ``--cluster`` starts tests/cluster's stack instead (three SASL_SSL brokers with both test listeners,
on the session's ports minus 6000 plus the offset).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleetstream.stack.supervisor import Stack  # noqa: E402
from runtime.settings import Settings  # noqa: E402

# tests/conftest.py's TEST_PORTS (not imported: that module rewrites the environment for xdist workers)
PORTS = dict(kafka_port=29092, kafka_controller_port=29093, mqtt_tls_port=28883, postgres_port=25432,
             gateway_port=28080, schema_registry_port=28081, streams_web_port=28090, metrics_port=28100,
             coap_port=25783)


# what tests/cluster/conftest.py starts (its ports are the session's minus 6000)
CLUSTER = dict(kafka_brokers=3, kafka_test_oauth_listener=True, kafka_test_mtls_listener=True,
               kafka_allow_test_only_security=True)


def one_run(offset: int, infra_only: bool, keep: bool = False, cluster: bool = False) -> dict:
    root = Path(tempfile.mkdtemp(prefix="fleetstream-startup-"))
    offset -= 6000 if cluster else 0
    s = Settings(data_dir=root, **{k: v + offset for k, v in PORTS.items()}, sink_batch_ms=100,
                 **(CLUSTER if cluster else {}))
    load_before = os.getloadavg()[0]
    stack = Stack(s)
    t0 = time.monotonic()
    try:
        stack.start_infra()
        infra = time.monotonic() - t0
        if not infra_only:
            stack.start_platform()
        total = time.monotonic() - t0
    finally:
        t_stop = time.monotonic()
        stack.stop(hard=True)
        stopped = time.monotonic() - t_stop
        if keep:
            print(f"data dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            s.master_key_path.unlink(missing_ok=True)
    return {"infra_s": round(infra, 1), "total_s": round(total, 1), "stop_s": round(stopped, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2), "steps": stack.steps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port-offset", type=int, default=int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "0")))
    ap.add_argument("--infra-only", action="store_true", help="start_infra only (the `infra` fixture)")
    ap.add_argument("--cluster", action="store_true", help="the 3-node SASL cluster stack of tests/cluster")
    ap.add_argument("--keep", action="store_true", help="keep the data dir (its logs) for inspection")
    ap.add_argument("--json", type=Path, help="append each run as a JSON line here")
    a = ap.parse_args()
    for n in range(a.runs):
        r = one_run(a.port_offset, a.infra_only, a.keep, a.cluster)
        print(f"run {n + 1}: infra {r['infra_s']} s, total {r['total_s']} s, hard stop {r['stop_s']} s "
              f"(load average {r['load_before']} -> {r['load_after']})")
        for name, began, ended in r["steps"]:
            print(f"  {began:6.2f} -> {ended:6.2f}  {ended - began:6.2f}  {name}")
        if a.json:
            with a.json.open("a") as f:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
