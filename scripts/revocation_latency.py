"""Measures how fast suspension and revocation take effect on tokens already issued (adr/0107), on two
gateway replicas, and what the per-request check costs.

    .venv/bin/python scripts/revocation_latency.py --samples 20 --port-offset 3100 [--out bench/results/...]

Starts its own stack in a temporary directory (ports shifted by --port-offset) plus a second gateway
replica, then for each sample: suspends a tenant (PATCH /v1/admin/tenants/{id}) while one thread per
replica polls GET /v1/devices with the tenant's old token, and records the time from sending the PATCH to
the first 403 on each replica; resumes it and waits for 200; the same for revoking an API client (401).
The per-request cost is timed in-process: ``AuthState.check`` on the live in-memory sets, the fallback
query a gateway makes while its listener is down, and ``KeyRing.verify`` (the signature check every
request already pays) for scale. Not a test: it prints numbers for the report."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import timeit
import urllib.request
import uuid
from pathlib import Path

import httpx

from fleetstream.stack.process import Child
from fleetstream.stack.supervisor import Stack, settings_env
from runtime.settings import Settings

PORTS = dict(kafka_port=29092, kafka_controller_port=29093, mqtt_tls_port=28883, postgres_port=25432,
             gateway_port=28080, schema_registry_port=28081, streams_web_port=28090)


def _replica(s: Settings, port: int) -> Child:
    env = {**settings_env(s), "FLEETSTREAM_GATEWAY_PORT": str(port),
           "FLEETSTREAM_CLICKHOUSE_DSN": f"chdb://{s.root / 'clickhouse-replica'}",
           "FLEETSTREAM_SINK_GROUP_PREFIX": "replica"}
    child = Child("gateway-replica", [sys.executable, "-m", "fleetstream.cli", "run", "gateway"],
                  s.logs_dir / "gateway-replica.log", env=env)
    child.start()

    def ready() -> bool:
        with urllib.request.urlopen(f"http://{s.host}:{port}/readyz", timeout=2) as r:
            return r.status == 200

    child.wait_until(ready, 180, "replica /readyz")
    return child


def _poll(url: str, token: str, want: int, start: threading.Event, out: dict, key: str) -> None:
    """Polls until the answer is ``want``; records (sent, received) of that first answer and the send time
    of the last request answered otherwise."""
    with httpx.Client(base_url=url, timeout=10) as c:
        start.wait()
        last_other = 0.0
        while True:
            sent = time.perf_counter()
            r = c.get("/v1/devices", params={"limit": 1}, headers={"Authorization": f"Bearer {token}"})
            if r.status_code == want:
                out[key] = (sent, time.perf_counter(), last_other)
                return
            last_other = sent


def _sample(urls: list[str], token: str, want: int, act, listener=None) -> dict:
    """Times ``act()`` (ms from sending it) against each replica's first ``want`` answer: when it was received
    (an upper bound, including one poll round trip) and when the last request answered otherwise was sent
    (a lower bound); with ``listener``, when this process's own ``AuthState`` applied the notification."""
    start, hits, threads = threading.Event(), {}, []
    for i, url in enumerate(urls):
        t = threading.Thread(target=_poll, args=(url, token, want, start, hits, str(i)), daemon=True)
        t.start()
        threads.append(t)
    start.set()
    time.sleep(0.05)  # the pollers are polling before the change is sent
    wall0, t0 = time.time(), time.perf_counter()
    act()
    took = (time.perf_counter() - t0) * 1000
    for t in threads:
        t.join(30)
    return {"received": [(hits[str(i)][1] - t0) * 1000 for i in range(len(urls))],
            "last_accepted_sent": [max(0.0, (hits[str(i)][2] - t0) * 1000) for i in range(len(urls))],
            "call": took, "wall0": wall0}


def _applied(log: Path, ident: str, status: str) -> list[float]:
    """Wall times at which a gateway's listener applied ``ident``'s change to ``status`` (its log lines)."""
    import datetime as dt

    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f"auth state: tenant {ident} is now {status}" in line or f"auth state: client {ident} is now {status}" in line:
            stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            out.append(stamp.timestamp())
    return out


def _collect(res: dict, what: str, sample: dict) -> None:
    res.setdefault(f"{what}: API call took", []).append(sample["call"])
    res.setdefault(f"{what}: first refusal received, per replica", []).extend(sample["received"])
    res.setdefault(f"{what}: last accepted request sent, per replica", []).extend(sample["last_accepted_sent"])


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": round(statistics.median(xs), 1),
            "p90_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.9))], 1), "max_ms": round(xs[-1], 1)}


def check_cost(s: Settings, tenant_id: str, client_id: str) -> dict:
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    from gateway.auth.revocation import AuthState
    from gateway.auth.tokens import KeyRing, Principal

    pool = ConnectionPool(s.app_dsn, min_size=1, max_size=2, kwargs={"row_factory": dict_row})
    state = AuthState(s.app_dsn, pool).start()
    p = Principal(tenant_id=tenant_id, client_id=client_id, scopes=frozenset({"devices:read"}))
    n = 200_000
    live_ns = timeit.timeit(lambda: state.check(p), number=n) / n * 1e9
    state.live.clear()  # what a gateway does while its listener is reconnecting
    fallback = []
    for _ in range(200):
        state._cache.clear()
        t0 = time.perf_counter()
        state.check(p)
        fallback.append((time.perf_counter() - t0) * 1e6)
    state.stop()
    pool.close()
    ring = KeyRing(s.root / "keys" / "jwt")
    tok = ring.issue(tenant_id=tenant_id, client_id=client_id, scopes=["devices:read"])
    verify_us = timeit.timeit(lambda: ring.verify(tok), number=2000) / 2000 * 1e6
    return {"check_live_ns": round(live_ns), "check_fallback_query_us_median": round(statistics.median(fallback)),
            "keyring_verify_us": round(verify_us)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--port-offset", type=int, default=3100)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    s = Settings(data_dir=Path(tempfile.mkdtemp(prefix="fleetstream-revocation-")),
                 **{k: v + args.port_offset for k, v in PORTS.items()})
    stack = Stack(s)
    replica = None
    try:
        stack.start_infra()
        stack.start_platform(roles=("gateway",))
        replica_port = s.gateway_port + 7
        replica = _replica(s, replica_port)
        urls = [f"http://{s.host}:{s.gateway_port}", f"http://{s.host}:{replica_port}"]
        from gateway.auth.tokens import PLATFORM_SCOPE, KeyRing

        platform = KeyRing(s.root / "keys" / "jwt").issue(tenant_id="", client_id="bench", scopes=[PLATFORM_SCOPE],
                                                          platform_admin=True, ttl_s=3600)
        ph = {"Authorization": f"Bearer {platform}"}
        res: dict[str, list] = {}
        logs = [s.logs_dir / "gateway.log", s.logs_dir / "gateway-replica.log"]
        starts: dict[str, list] = {"suspend": [], "revoke": []}
        with httpx.Client(base_url=urls[0], timeout=30) as c:
            t = c.post("/v1/admin/tenants", json={"name": f"rev-{uuid.uuid4().hex[:6]}"}, headers=ph).json()
            creds = {"grant_type": "client_credentials", "client_id": t["client_id"], "client_secret": t["client_secret"]}
            token = c.post("/v1/oauth/token", data=creds).json()["access_token"]
            th = {"Authorization": f"Bearer {token}"}
            for _ in range(args.samples):
                sample = _sample(urls, token, 403, lambda: c.patch(
                    f"/v1/admin/tenants/{t['tenant_id']}", json={"status": "suspended"}, headers=ph).raise_for_status())
                _collect(res, "suspend", sample)
                starts["suspend"].append((t["tenant_id"], "suspended", sample["wall0"]))
                _sample(urls, token, 200, lambda: c.patch(
                    f"/v1/admin/tenants/{t['tenant_id']}", json={"status": "active"}, headers=ph).raise_for_status())
            for _ in range(args.samples):
                cl = c.post("/v1/clients", json={"name": "r", "scopes": ["devices:read"]}, headers=th).json()
                tok = c.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": cl["client_id"],
                                                      "client_secret": cl["client_secret"]}).json()["access_token"]
                sample = _sample(urls, tok, 401, lambda cid=cl["client_id"]: c.post(
                    f"/v1/clients/{cid}/revoke", headers=th).raise_for_status())
                _collect(res, "revoke", sample)
                starts["revoke"].append((cl["client_id"], "revoked", sample["wall0"]))
        for what, calls in starts.items():
            for log in logs:  # the n-th change of an id is the n-th line applying it
                seen: dict[tuple, int] = {}
                for ident, status, wall0 in calls:
                    n = seen.get((ident, status), 0)
                    seen[(ident, status)] = n + 1
                    applied = _applied(log, ident, status)
                    if n < len(applied):
                        res.setdefault(f"{what}: change applied in each replica (its log)", []).append(
                            (applied[n] - wall0) * 1000)
        cost = check_cost(s, t["tenant_id"], t["client_id"])
        out = {k: _stats(v) for k, v in sorted(res.items())}
        out.update(per_request_check=cost, replicas=2, samples=args.samples, load_average=os.getloadavg(),
                   cores=os.cpu_count())
        print(json.dumps(out, indent=2))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2) + "\n")
    finally:
        if replica is not None:
            replica.stop()
        stack.stop()


if __name__ == "__main__":
    main()
