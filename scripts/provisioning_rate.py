"""Measures the control plane's provisioning rate (devices/s): N devices through POST /v1/devices/import
(CSV, batches of 1000: Postgres rows, broker authorisation, registry entries) on a running stack.

    FLEETSTREAM_DATA_DIR=... .venv/bin/python scripts/provisioning_rate.py --devices 10000
Not a test: it prints a number for the report and the ADR."""

from __future__ import annotations

import argparse
import time
import uuid

import httpx

from fleetstream.settings import Settings
from gateway.admin import Admin


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000)
    args = p.parse_args()
    s = Settings()
    admin = Admin(s)
    try:
        t = admin.create_tenant(f"rate-{uuid.uuid4().hex[:6]}")
    finally:
        admin.close()
    with httpx.Client(base_url=f"http://{s.host}:{s.gateway_port}", timeout=600) as c:
        tok = c.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": t["client_id"],
                                              "client_secret": t["client_secret"]}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}", "content-type": "text/csv"}
        t0, created = time.monotonic(), 0
        for start in range(0, args.devices, args.batch):
            rows = "\n".join(f"dev-{i:06d},meter,bench" for i in range(start, min(start + args.batch, args.devices)))
            r = c.post("/v1/devices/import", content=f"device_id,device_type,tags\n{rows}\n", headers=h)
            if r.status_code != 200:
                raise SystemExit(f"import failed after {created} devices: {r.status_code} {r.text}")
            created += r.json()["created"]
        took = time.monotonic() - t0
        single_t0, single = time.monotonic(), 200
        for i in range(single):
            c.post("/v1/devices", json={"device_id": f"one-{i:04d}"}, headers={"Authorization": f"Bearer {tok}"}
                   ).raise_for_status()
        single_took = time.monotonic() - single_t0
    print(f"bulk import: {created} devices in {took:.1f}s = {created / took:.0f} devices/s")
    print(f"one by one (POST /v1/devices): {single} devices in {single_took:.1f}s = {single / single_took:.0f} devices/s")


if __name__ == "__main__":
    main()
