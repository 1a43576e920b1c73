"""Concurrent mTLS MQTT device sessions on one node (issue 7: 10,000): provision N devices through the
control plane's bulk path, connect one real mTLS MQTT 5 session per device, hold them with keepalive,
publish a little, report.

    .venv/bin/python scripts/sessions_probe.py --devices 10000 --hold 120 --port-offset 1750
    .venv/bin/python scripts/sessions_probe.py --devices 10000 --provision seed   # fleet bootstrap (adr/0035)

It starts its own Postgres, Mosquitto and Kafka in a temp dir (ports shifted by --port-offset) and stops
them at the end. ``--provision live`` authorises devices on the running broker over the dynamic-security
control topic (``create_devices``, what ``POST /v1/devices/bulk`` runs); ``seed`` stops the broker, writes
the same entries into its file in one go and starts it again. Sessions are minimal asyncio MQTT 5
clients (CONNECT, QoS1 PUBLISH, PINGREQ, DISCONNECT by hand): one connection and one certificate per
device, little CPU per session, so the number says what the broker holds. Not a test: it prints numbers.

N sessions hold N local ephemeral ports (32768-60999 here): a stack started meanwhile on fixed ports in that
range (the stack CLI test uses 35432+offset, ...) can fail with "address already in use".
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.sslproto
import json
import os
import resource
import shutil
import signal
import ssl
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetstream.stack.mosquitto import dynsec_file, mqtt_ready, raise_fd_limit, seed_dynsec  # noqa: E402
from fleetstream.stack.supervisor import Stack  # noqa: E402
from runtime.settings import Settings  # noqa: E402

CHUNK = 1000  # devices per bulk call, like POST /v1/devices/bulk
MARKS = (1000, 5000, 10000, 20000)


# -- process figures ----------------------------------------------------------------------------------
def proc_stats(pid: int) -> dict:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    return {"cpu_s": round((int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"), 2),
            "rss_mb": round(rss_kb / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def snapshot(broker_pid: int) -> dict:
    return {"t": round(time.monotonic(), 2), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "broker": proc_stats(broker_pid), "client": proc_stats(os.getpid())}


# -- provisioning --------------------------------------------------------------------------------------
def provision(stack: Stack, s: Settings, n: int, mode: str, out: Path) -> dict:
    """Tenant, then n devices in bulk calls of CHUNK; each device's certificate and key in one PEM file."""
    from gateway.admin import Admin
    from gateway.broker.dynsec import device_entries
    from gateway.identity.provisioning import create_devices, issue_certificates

    admin = Admin(s)
    roles, clients = [], []

    def collect(tenant_id: str, device_ids: list[str]) -> None:  # the broker step of a fleet bootstrap
        for d in device_ids:
            role, client = device_entries(tenant_id, d)
            roles.append(role)
            clients.append(client)

    broker = next(c for c in stack.children if c.name == "mosquitto")
    try:
        tenant = admin.create_tenant(f"probe-{uuid.uuid4().hex[:6]}")["tenant_id"]
        if mode == "seed":  # the admin has not opened its dynsec client yet: nothing talks to the broker
            broker.stop()
        t0, marks, timeline = time.monotonic(), {}, []
        for start in range(0, n, CHUNK):
            ids = [f"p-{i:06d}" for i in range(start, min(start + CHUNK, n))]
            items = [({"index": i, "device_id": d}, {"device_id": d, "device_type": "probe", "tags": ["probe"],
                                                      "attributes": {}}) for i, d in enumerate(ids)]
            tb = time.monotonic()
            res = create_devices(admin, tenant, items, actor="sessions-probe",
                                 authorise=collect if mode == "seed" else None)
            broker_s = time.monotonic() - tb
            bad = [r for r in res if r.get("status") != "created"]
            if bad:
                raise SystemExit(f"provisioning failed: {bad[:3]}")
            for d, issued in issue_certificates(admin, tenant, ids, actor="sessions-probe").items():
                pem = out / f"{d}.pem"
                pem.write_text(issued.private_key_pem + issued.certificate_pem)
                pem.chmod(0o600)
            done = start + len(ids)
            timeline.append({"devices": done, "s": round(time.monotonic() - t0, 1), "chunk_rows_broker_s": round(broker_s, 2)})
            print(f"  provisioned {done} devices in {time.monotonic() - t0:.1f}s "
                  f"(last chunk: rows+broker+registry {broker_s:.1f}s)", flush=True)
            if done in MARKS:
                marks[done] = round(done / (time.monotonic() - t0), 1)
        seed_s = 0.0
        if mode == "seed":
            ts = time.monotonic()
            seed_dynsec(s, roles, clients)
            broker.start()
            broker.wait_until(lambda: mqtt_ready(s, stack.pki), 60, "mosquitto mTLS CONNECT after seeding")
            seed_s = time.monotonic() - ts
        took = time.monotonic() - t0
    finally:
        admin.close()
    return {"mode": mode, "devices": n, "seconds": round(took, 1), "devices_per_s": round(n / took, 1),
            "devices_per_s_at": marks, "seed_and_broker_restart_s": round(seed_s, 2),
            "dynsec_file_mb": round(dynsec_file(s).stat().st_size / 1e6, 1), "timeline": timeline,
            "tenant_id": tenant}


# -- a minimal MQTT 5 session ------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    n, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        n += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, await reader.readexactly(n)


class Counters:
    def __init__(self):
        self.connected = self.connect_failed = self.held = self.dropped = 0
        self.acked = self.refused = self.unanswered = 0
        self.first_error: str | None = None


class Session:
    """One device: CONNECT, a QoS1 telemetry PUBLISH, PINGREQ every keepalive while held, a last PUBLISH,
    DISCONNECT. Any read error before the end counts as a dropped session."""

    def __init__(self, s: Settings, ca: str, pem: Path, tenant: str, device: str, keepalive: int, c: Counters):
        self.s, self.ca, self.pem, self.tenant, self.device, self.keepalive, self.c = s, ca, pem, tenant, device, keepalive, c
        self.topic = f"fs/{tenant}/{device}/telemetry"
        self.mid = 0

    async def connect(self, sem: asyncio.Semaphore) -> bool:
        async with sem:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca)
            ctx.load_cert_chain(str(self.pem))
            try:
                self.r, self.w = await asyncio.open_connection(self.s.mqtt_broker_host, self.s.mqtt_tls_port, ssl=ctx,
                                                               server_hostname=self.s.mqtt_broker_host)
                body = (_utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", self.keepalive) + b"\x00"
                        + _utf8(f"{self.tenant}.{self.device}"))
                self.w.write(_packet(0x10, body))
                first, data = await asyncio.wait_for(_read_packet(self.r), 60)
                if first >> 4 != 2 or data[1] >= 0x80:
                    raise ConnectionError(f"CONNACK {data[1] if len(data) > 1 else '?'}")
            except (TimeoutError, OSError, ssl.SSLError, asyncio.IncompleteReadError, ConnectionError) as exc:
                self.c.connect_failed += 1
                self.c.first_error = self.c.first_error or f"{type(exc).__name__}: {exc}"
                return False
        self.c.connected += 1
        return True

    async def publish(self) -> None:
        self.mid = self.mid % 65535 + 1
        payload = json.dumps({"ts": int(time.time() * 1000), "values": {"temperature": 21.5}}).encode()
        self.w.write(_packet(0x32, _utf8(self.topic) + struct.pack("!H", self.mid) + b"\x00" + payload))

    async def life(self, sem: asyncio.Semaphore, phase: Phase) -> None:
        ok = await self.connect(sem)
        phase.attempted()
        if ok:
            await self.hold(phase)

    async def hold(self, phase: Phase) -> None:
        """Reads PUBACKs/PINGRESPs and pings when the link has been quiet for 3/4 of a keepalive, from the
        moment it connected (the broker drops a session silent for 1.5 keepalives) until the deadline."""
        await self.publish()
        pending_ack, ended = True, False
        try:
            while True:
                wait = self.keepalive * 0.75
                if phase.deadline is not None:
                    # after the shared deadline: this session's last publish, then up to 30 s for its PUBACK
                    end_by = phase.deadline + 30 if ended else phase.deadline
                    left = end_by - time.monotonic()
                    if left <= 0:
                        if not ended:
                            await self.publish()
                            pending_ack, ended = True, True
                            continue
                        self.c.unanswered += 1
                        break
                    wait = min(wait, left)
                try:
                    first, data = await asyncio.wait_for(_read_packet(self.r), wait)
                except TimeoutError:
                    self.w.write(b"\xc0\x00")  # PINGREQ
                    continue
                if first >> 4 == 4 and pending_ack:  # PUBACK: reason code after the id, 0 when absent
                    code = data[2] if len(data) > 2 else 0
                    if code >= 0x80:
                        self.c.refused += 1
                    else:
                        self.c.acked += 1
                    pending_ack = False
                    if ended:
                        break
            self.c.held += 1
            self.w.write(b"\xe0\x00")  # DISCONNECT
            await self.w.drain()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            self.c.dropped += 1
            self.c.first_error = self.c.first_error or f"held session dropped: {type(exc).__name__}: {exc}"
        finally:
            self.w.close()


class Phase:
    """Shared by all sessions: every connect attempted, then one deadline for all of them."""

    def __init__(self, n: int):
        self.n, self.done, self.deadline = n, 0, None
        self.all_attempted = asyncio.Event()

    def attempted(self) -> None:
        self.done += 1
        if self.done == self.n:
            self.all_attempted.set()


async def run_sessions(s: Settings, tenant: str, pems: Path, n: int, *, hold_s: float, keepalive: int,
                       concurrency: int, broker_pid: int) -> dict:
    ca = s.pki_dir.joinpath("ca.crt").read_text()
    # asyncio gives every TLS connection a 256 KiB read buffer (3.3 GB of client RSS at 10k sessions);
    # one TLS record is at most 16 KiB
    asyncio.sslproto.SSLProtocol.max_size = 32 * 1024
    c = Counters()
    sessions = [Session(s, ca, pems / f"p-{i:06d}.pem", tenant, f"p-{i:06d}", keepalive, c) for i in range(n)]
    sem = asyncio.Semaphore(concurrency)
    before = snapshot(broker_pid)
    t0 = time.monotonic()

    async def progress():
        while True:
            await asyncio.sleep(5)
            print(f"  {c.connected} connected, {c.connect_failed} failed after {time.monotonic() - t0:.0f}s", flush=True)

    ticker = asyncio.create_task(progress())
    phase = Phase(n)
    lives = [asyncio.create_task(x.life(sem, phase)) for x in sessions]
    await phase.all_attempted.wait()
    connect_s = time.monotonic() - t0
    ticker.cancel()
    after_connect = snapshot(broker_pid)
    print(f"  {c.connected - c.dropped} sessions up after {connect_s:.1f}s; holding {hold_s:.0f}s", flush=True)
    phase.deadline = time.monotonic() + hold_s
    await asyncio.sleep(max(0.0, hold_s - 5))
    during_hold = snapshot(broker_pid)
    connected_broker_fds = during_hold["broker"]["fds"]
    await asyncio.gather(*lives)
    end = snapshot(broker_pid)
    return {"sessions_requested": n, "connected": c.connected, "connect_failed": c.connect_failed,
            "connect_s": round(connect_s, 1), "connects_per_s": round(c.connected / connect_s, 1) if connect_s else None,
            "held_to_end": c.held, "dropped": c.dropped, "hold_s": hold_s, "keepalive_s": keepalive,
            "publishes_acked": c.acked, "publishes_refused": c.refused, "publishes_unanswered": c.unanswered,
            "broker_fds_while_held": connected_broker_fds, "first_error": c.first_error,
            "broker_cpu_s_connecting": round(after_connect["broker"]["cpu_s"] - before["broker"]["cpu_s"], 1),
            "broker_cpu_s_holding": round(end["broker"]["cpu_s"] - after_connect["broker"]["cpu_s"], 1),
            "client_cpu_s_connecting": round(after_connect["client"]["cpu_s"] - before["client"]["cpu_s"], 1),
            "client_cpu_s_holding": round(end["client"]["cpu_s"] - after_connect["client"]["cpu_s"], 1),
            "snapshots": {"before": before, "connected": after_connect, "holding": during_hold, "end": end}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--hold", type=float, default=120, help="seconds every session is held after the last connect")
    p.add_argument("--keepalive", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=200, help="connects (TLS handshakes) in flight")
    p.add_argument("--provision", choices=("live", "seed"), default="live")
    p.add_argument("--port-offset", type=int, default=1750)
    p.add_argument("--keep-data", action="store_true", help="leave the temp data dir for inspection")
    p.add_argument("--json", type=Path, help="also write the report here")
    a = p.parse_args()

    nofile = raise_fd_limit()  # the client holds one socket per session too
    if nofile < a.devices + 200:
        raise SystemExit(f"open-files limit {nofile} < {a.devices} sessions + margin: raise `ulimit -n`")
    base = Settings()
    ports = {k: getattr(base, k) + a.port_offset for k, f in Settings.model_fields.items()
             if k.endswith("_port") and f.annotation is int}
    root = Path(tempfile.mkdtemp(prefix="fleetstream-sessions-"))
    s = Settings(data_dir=root, **ports)
    stack = Stack(s)
    report: dict = {"devices": a.devices, "cores": os.cpu_count(), "open_files_limit": nofile,
                    "load_avg_start": [round(x, 2) for x in os.getloadavg()], "mosquitto": "2.0.11 (Debian)"}
    try:
        print(f"[probe] stack in {root} (ports +{a.port_offset})", flush=True)
        stack.start_infra()
        pems = root / "probe-devices"
        pems.mkdir()
        print(f"[probe] provisioning {a.devices} devices ({a.provision})", flush=True)
        report["provisioning"] = provision(stack, s, a.devices, a.provision, pems)
        broker_pid = next(c for c in stack.children if c.name == "mosquitto").pid
        print(f"[probe] {a.devices} sessions, {a.concurrency} connects in flight", flush=True)
        report["sessions"] = asyncio.run(run_sessions(s, report["provisioning"]["tenant_id"], pems, a.devices,
                                                      hold_s=a.hold, keepalive=a.keepalive,
                                                      concurrency=a.concurrency, broker_pid=broker_pid))
        report["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        stack.stop()
        if not a.keep_data:
            shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`/kill still stop the probe's stack
    main()
