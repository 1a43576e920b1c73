"""Measures the control plane's provisioning rate (devices/s): N devices through POST /v1/devices/import
(CSV, batches of 1000: Postgres rows, broker authorisation, registry entries) on a running stack.

    FLEETSTREAM_DATA_DIR=... .venv/bin/python scripts/provisioning_rate.py --devices 10000
Not a test: it prints a number for the report and the ADR."""

from __future__ import annotations

import argparse
import time
import uuid

import httpx

from gateway.admin import Admin
from runtime.settings import Settings


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--single", type=int, default=200, help="devices created one by one after the import")
    p.add_argument("--drop-samples", type=int, default=20, help="devices to time suspend -> session dropped")
    args = p.parse_args()
    s = Settings()
    admin = Admin(s)
    try:
        t = admin.create_tenant(f"rate-{uuid.uuid4().hex[:6]}")
    finally:
        admin.close()
    with httpx.Client(base_url=f"http://{s.host}:{s.gateway_port}", timeout=600) as c:
        def token() -> str:  # a long run outlives one token
            return c.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": t["client_id"],
                                                   "client_secret": t["client_secret"]}).json()["access_token"]

        tok = token()
        t0, created = time.monotonic(), 0
        for start in range(0, args.devices, args.batch):
            tok = token()
            h = {"Authorization": f"Bearer {tok}", "content-type": "text/csv"}
            rows = "\n".join(f"dev-{i:06d},meter,bench" for i in range(start, min(start + args.batch, args.devices)))
            r = c.post("/v1/devices/import", content=f"device_id,device_type,tags\n{rows}\n", headers=h)
            if r.status_code != 200:
                raise SystemExit(f"import failed after {created} devices: {r.status_code} {r.text}")
            created += r.json()["created"]
            print(f"  {created} devices after {time.monotonic() - t0:.1f}s", flush=True)
        took = time.monotonic() - t0
        single_t0, single = time.monotonic(), args.single
        for i in range(single):
            c.post("/v1/devices", json={"device_id": f"one-{i:04d}"}, headers={"Authorization": f"Bearer {tok}"}
                   ).raise_for_status()
        single_took = time.monotonic() - single_t0
        drops = _session_drop_latency(s, c, tok, t["tenant_id"], args.drop_samples)
    if created:
        print(f"bulk import: {created} devices in {took:.1f}s = {created / took:.0f} devices/s")
    if single:
        print(f"one by one (POST /v1/devices): {single} devices in {single_took:.1f}s = {single / single_took:.0f} devices/s")
    if drops:
        drops.sort()
        print(f"suspend -> live session dropped: {len(drops)} samples, median {drops[len(drops) // 2] * 1000:.0f} ms, "
              f"max {drops[-1] * 1000:.0f} ms (from the API call's start)")


def _session_drop_latency(s: Settings, c: httpx.Client, tok: str, tenant_id: str, n: int) -> list[float]:
    """Connects n certificate devices, suspends each through the API, times until paho sees the drop."""
    import ssl
    import tempfile
    import threading
    from pathlib import Path

    import paho.mqtt.client as mqtt

    h = {"Authorization": f"Bearer {tok}"}
    out = []
    for i in range(n):
        dev = f"drop-{i:03d}"
        c.post("/v1/devices", json={"device_id": dev}, headers=h).raise_for_status()
        issued = c.post(f"/v1/devices/{dev}/certificates", json={}, headers=h).json()
        d = Path(tempfile.mkdtemp())
        (d / "c.pem").write_text(issued["certificate_pem"])
        (d / "k.pem").write_text(issued["private_key_pem"])
        (d / "ca.pem").write_text(issued["ca_pem"])
        ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
        ctx.load_cert_chain(str(d / "c.pem"), str(d / "k.pem"))
        up, down = threading.Event(), threading.Event()
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{tenant_id}.{dev}", protocol=mqtt.MQTTv5)
        m.tls_set_context(ctx)
        m.on_connect = lambda *_a, ev=up: ev.set()
        m.on_disconnect = lambda *_a, ev=down: ev.set()
        m.connect(s.mqtt_broker_host, s.mqtt_tls_port, keepalive=30)
        m.loop_start()
        if not up.wait(30):
            continue
        t0 = time.monotonic()
        c.post(f"/v1/devices/{dev}/suspend", headers=h).raise_for_status()
        if down.wait(30):
            out.append(time.monotonic() - t0)
        m.loop_stop()
    return out


def without_broker(n: int) -> None:
    """The same import in-process with the broker step replaced by a no-op: what Postgres and the
    registry topic cost alone (the local Mosquitto dynsec plugin dominates the HTTP number)."""
    from gateway.identity.provisioning import import_devices

    class NoBroker:
        def authorise_devices(self, *_a) -> None:
            pass

    s = Settings()
    admin = Admin(s)
    admin._dynsec = NoBroker()  # type: ignore[assignment]
    try:
        t = admin.create_tenant(f"rate-nb-{uuid.uuid4().hex[:6]}")
        t0 = time.monotonic()
        rows = [{"line": i + 2, "device_id": f"nb-{i:06d}", "device_type": "meter", "tags": "bench"} for i in range(n)]
        for start in range(0, n, 1000):
            import_devices(admin, t["tenant_id"], rows[start:start + 1000], actor="bench")
        took = time.monotonic() - t0
        print(f"without the broker (Postgres + registry topic): {n} devices in {took:.1f}s = {n / took:.0f} devices/s")
    finally:
        admin._dynsec = None
        admin.close()


if __name__ == "__main__":
    import sys

    if "--without-broker" in sys.argv:
        without_broker(int(sys.argv[sys.argv.index("--without-broker") + 1]))
    else:
        main()
