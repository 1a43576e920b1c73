"""Time from a control-plane API call to the broker acting on it (issue 19, adr/0100): revoking one certificate
of a device that holds another, suspending a device, suspending a tenant with N connected devices. For each
round: the API call's own duration, the time until the live session(s) were closed and until a reconnect
was refused; then resume and the time until the device connects again.

    .venv/bin/python scripts/broker_access_latency.py --rounds 10 --tenant-devices 50 --port-offset 1150

Starts its own Postgres, Mosquitto, Kafka and gateway in a temp dir (ports shifted by --port-offset), stops
them at the end, writes JSON + Markdown to bench/results/. Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from fleetstream.stack.supervisor import Stack  # noqa: E402
from gateway.admin import Admin  # noqa: E402
from gateway.auth.tokens import PLATFORM_SCOPE, KeyRing  # noqa: E402
from runtime.pki import write_private  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from tests.broker.conftest import Identity, Session  # noqa: E402

REFUSED = 0x87


class _Broker:
    def __init__(self, s: Settings, stack: Stack):
        self.s, self.pki = s, stack.pki


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--tenant-devices", type=int, default=50)
    ap.add_argument("--port-offset", type=int, default=1150)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "bench" / "results")
    args = ap.parse_args()
    base = Settings()
    ports = {n: getattr(base, n) + args.port_offset for n, f in Settings.model_fields.items()
             if n.endswith("_port") and f.annotation is int}
    s = Settings(data_dir=Path(tempfile.mkdtemp(prefix="fleetstream-access-latency-")), **ports)
    stack = Stack(s)
    samples: dict[str, list[dict]] = {"revoke certificate": [], "suspend device": [], "suspend tenant": []}
    load = [os.getloadavg()]
    try:
        stack.start_infra()
        stack.start_platform(roles=("gateway",))
        admin = Admin(s)
        broker = _Broker(s, stack)
        http = httpx.Client(base_url=f"http://{s.host}:{s.gateway_port}", timeout=60)
        platform = {"Authorization": "Bearer " + KeyRing(s.root / "keys" / "jwt").issue(
            tenant_id="", client_id="latency", scopes=[PLATFORM_SCOPE], platform_admin=True)}
        tenant = admin.create_tenant(f"latency-{uuid.uuid4().hex[:6]}")
        tid = tenant["tenant_id"]
        tok = http.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": tenant["client_id"],
                                                 "client_secret": tenant["client_secret"]}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        devices = admin.create_devices(tid, [f"d{i:04d}" for i in range(args.tenant_devices)], cert_root=s.root / "certs")
        ids = [Identity(f"{tid}.{d['device_id']}", Path(d["cert"]), Path(d["key"]), d["serial"]) for d in devices]

        def timed(call, live: list[Session], again: Identity) -> dict:
            t0 = time.monotonic()
            r = call()
            api = time.monotonic() - t0
            assert r.status_code == 200, r.text
            for sess in live:
                sess.wait(lambda sess=sess: sess.disconnects, timeout=60, what="session closed")
            cut = time.monotonic() - t0
            probe = Session(broker, again, again.cn)
            assert probe.connect() == REFUSED
            probe.close()
            return {"api_ms": _ms(api), "sessions_closed_ms": _ms(cut), "reconnect_refused_ms": _ms(time.monotonic() - t0)}

        for rnd in range(args.rounds):
            dev = ids[0]
            device_id = dev.cn.split(".", 1)[1]
            # revoke: a fresh second certificate each round, connect with it, revoke it
            r = http.post(f"/v1/devices/{device_id}/certificates", json={}, headers=h)
            issued = r.json()
            d = s.root / "extra" / issued["serial"]
            d.mkdir(parents=True)
            (d / "device.crt").write_text(issued["certificate_pem"])
            write_private(d / "device.key", issued["private_key_pem"].encode())
            extra = Identity(dev.cn, d / "device.crt", d / "device.key", issued["serial"])
            live = Session(broker, extra, dev.cn)
            assert live.connect() == 0
            samples["revoke certificate"].append(timed(
                lambda d=device_id, x=extra.serial: http.post(f"/v1/devices/{d}/certificates/{x}/revoke", headers=h),
                [live], extra))
            # suspend and resume the device
            live = Session(broker, dev, dev.cn)
            assert live.connect() == 0
            sample = timed(lambda d=device_id: http.post(f"/v1/devices/{d}/suspend", headers=h), [live], dev)
            t0 = time.monotonic()
            assert http.post(f"/v1/devices/{device_id}/resume", headers=h).status_code == 200
            back = Session(broker, dev, dev.cn)
            assert back.connect() == 0
            sample["resume_to_connected_ms"] = _ms(time.monotonic() - t0)
            back.close()
            samples["suspend device"].append(sample)
            # suspend and resume the tenant with every device connected
            live_all = [Session(broker, i, i.cn) for i in ids]
            assert all(x.connect() == 0 for x in live_all)
            sample = timed(lambda: http.patch(f"/v1/admin/tenants/{tid}", json={"status": "suspended"}, headers=platform),
                           live_all, ids[-1])
            t0 = time.monotonic()
            assert http.patch(f"/v1/admin/tenants/{tid}", json={"status": "active"}, headers=platform).status_code == 200
            back = Session(broker, ids[-1], ids[-1].cn)
            assert back.connect() == 0
            sample["resume_to_connected_ms"] = _ms(time.monotonic() - t0)
            back.close()
            samples["suspend tenant"].append(sample)
            for x in live_all:
                x.close()
            load.append(os.getloadavg())
            print(f"round {rnd + 1}/{args.rounds}: " + json.dumps({k: v[-1] for k, v in samples.items()}), flush=True)
        admin.close()
        http.close()
    finally:
        stack.stop()
    summary = {what: {k: {"median": statistics.median(x[k] for x in rows), "max": max(x[k] for x in rows)}
                      for k in rows[0]} for what, rows in samples.items()}
    report = {"rounds": args.rounds, "tenant_devices": args.tenant_devices, "cores": os.cpu_count(),
              "load_avg": [round(sum(x[0] for x in load) / len(load), 1), round(max(x[0] for x in load), 1)],
              "summary": summary, "samples": samples}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{time.strftime('%Y-%m-%d')}-broker-access-latency"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
