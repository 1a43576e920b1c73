"""One load-generator process: many device connections driven by a single thread.

Each device is a real MQTT 5 session over its own mTLS connection (its own certificate), publishing QoS1
and counting the broker's PUBACKs. The MQTT part is the handful of packets in ``connectors.mqtt.packets``
written straight to a non-blocking ``SSLSocket``: a publish is its topic bytes (built once per device), a
packet id and the payload, one ``send``. paho cost ~70–90 µs per publish here (message objects, locks,
callbacks, its own buffering) on top of the TLS write this cannot avoid (adr/0071, adr/0045).

One selector watches every socket; publishes are spread evenly in time: every 5 ms tick sends the messages
that are due since the rate was set, round-robin over the devices, then reads whatever PUBACKs arrived.
"""

from __future__ import annotations

import os
import queue
import selectors
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from connectors.mqtt import packets as p

from .payloads import payload

TICK_S = 0.005
STATS_EVERY_S = 1.0
MISC_EVERY_S = 2.0
CONNECT_BATCH = 500  # devices connected between two keepalive rounds of the connect phase
_READ = selectors.EVENT_READ
_RW = selectors.EVENT_READ | selectors.EVENT_WRITE


@dataclass
class WorkerSpec:
    worker_id: int
    host: str
    port: int
    tenant_id: str  # the tenant of a device listed without one
    devices: list[tuple[str, ...]]  # (device_id, cert_dir) or (device_id, cert_dir, tenant_id)
    qos: int = 1
    payload: str = "smart-meter"
    connect_threads: int = 4
    keepalive: int = 120
    inflight: int = 100


@dataclass(slots=True, eq=False)
class _Device:
    device_id: str
    first: bytes  # PUBLISH fixed-header first byte
    topic: bytes  # length-prefixed topic
    client_id: str = ""
    sock: ssl.SSLSocket | None = None
    inflight_max: int = 100
    inflight: int = 0
    owed: int = 0  # due while the in-flight window was full: sent as PUBACKs free it
    next_pid: int = 0
    last_ts: int = 0
    sent: int = 0
    acked: int = 0
    refused: int = 0
    first_ts: int = 0
    connected: bool = False
    last_tx: float = 0.0
    out: list[bytes] = field(default_factory=list)  # writes the socket did not take yet, in order
    rx: bytearray = field(default_factory=bytearray)


@dataclass
class _Counters:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    skipped: int = 0
    owed: int = 0  # due but held back by full in-flight windows; sent as PUBACKs arrive
    disconnects: int = 0
    connect_failures: list[str] = field(default_factory=list)


def _connect(spec: WorkerSpec, dev: _Device, cert_dir: str) -> None:
    """Blocking TLS handshake, CONNECT and CONNACK; then the socket goes non-blocking for the selector."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=f"{cert_dir}/ca.crt")
    ctx.load_cert_chain(f"{cert_dir}/device.crt", f"{cert_dir}/device.key")
    raw = socket.create_connection((spec.host, spec.port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname=spec.host)
    sock.sendall(p.connect(dev.client_id, keepalive=spec.keepalive, clean_start=True))
    buf = bytearray()
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("broker closed the connection before CONNACK")
        buf += chunk
        packets, used = p.split(buf)
        if packets:
            break
    kind, _flags, body = packets[0]
    if kind != p.CONNACK or p.reason_of(body, 1) >= 0x80:
        sock.close()
        raise ConnectionError(f"CONNACK refused: reason 0x{p.reason_of(body, 1):02x}")
    dev.inflight_max = min(dev.inflight_max, _receive_maximum(body) or 65535)
    del buf[:used]
    dev.rx = buf
    sock.setblocking(False)
    dev.sock, dev.connected, dev.last_tx = sock, True, time.monotonic()


def _ping_stale(devices: list[_Device], keepalive: int) -> None:
    """A PINGREQ from each connected device silent for half its keepalive (before the selector loop runs; the
    PINGRESP waits in the socket for it). A socket that fails here is found lost by that loop."""
    stale = time.monotonic() - keepalive / 2
    for d in devices:
        if d.connected and d.sock is not None and d.last_tx < stale:
            try:
                d.sock.send(p.PINGREQ_PACKET)
                d.last_tx = time.monotonic()
            except (ssl.SSLWantWriteError, BlockingIOError, OSError):
                pass


def _receive_maximum(connack: bytes) -> int | None:
    """The broker's Receive Maximum property (0x21) from a CONNACK body, if it sent one."""
    if len(connack) <= 2:
        return None
    plen, pos = p.read_varint(connack, 2)
    end = pos + plen
    while pos < end:
        pid = connack[pos]
        pos += 1
        if pid == 0x21:
            return (connack[pos] << 8) | connack[pos + 1]
        if pid in (0x24, 0x25, 0x28, 0x29, 0x2A, 0x01, 0x17, 0x19):  # byte properties
            pos += 1
        elif pid in (0x13, 0x22):  # two-byte integers
            pos += 2
        elif pid in (0x11, 0x27):  # four-byte integers
            pos += 4
        elif pid == 0x26:  # user property: two strings
            for _ in range(2):
                pos += 2 + ((connack[pos] << 8) | connack[pos + 1])
        else:  # strings and binary data (assigned client id, reason string, auth, server reference ...)
            pos += 2 + ((connack[pos] << 8) | connack[pos + 1])
    return None


def run_worker(spec: WorkerSpec, ctrl, out) -> None:
    """Process entry point. ``ctrl`` receives ("rate", msgs_per_s) and ("stop",); ``out`` gets
    ("connected", id, n, failures), periodic ("stats", id, {...}) and a final ("final", id, {...})."""
    counters = _Counters()
    render = payload(spec.payload)
    qos = spec.qos
    devices = []
    for device_id, _, *tenant in spec.devices:
        tenant_id = tenant[0] if tenant and tenant[0] else spec.tenant_id
        first, topic = p.publish_prefix(f"fs/{tenant_id}/{device_id}/telemetry", qos)
        devices.append(_Device(device_id, first, topic, f"{tenant_id}.{device_id}", inflight_max=spec.inflight))
    sel = selectors.DefaultSelector()

    def connect(item: tuple[_Device, str]) -> None:
        dev, cert_dir = item
        try:
            _connect(spec, dev, cert_dir)
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            counters.connect_failures.append(f"{dev.device_id}: {exc}")

    pairs = list(zip(devices, [d[1] for d in spec.devices], strict=True))
    with ThreadPoolExecutor(spec.connect_threads) as pool:  # TLS handshakes overlap their round trips
        # in batches, pinging between them: connecting thousands of devices can outlast 1.5 keepalives, after
        # which the broker drops the first ones (seen at 10k: 1,424 of 10,000 lost during a 242 s connect phase)
        for i in range(0, len(pairs), CONNECT_BATCH):
            list(pool.map(connect, pairs[i:i + CONNECT_BATCH]))
            _ping_stale(devices[:i + CONNECT_BATCH], spec.keepalive)
    live = [d for d in devices if d.connected]
    for d in live:
        sel.register(d.sock, _READ, d)
    out.put(("connected", spec.worker_id, len(live), counters.connect_failures[:5]))

    def send(d: _Device, data: bytes) -> None:
        if d.out:  # keep order behind what the socket did not take yet
            d.out.append(data)
            return
        try:
            d.sock.send(data)  # small packets: SSL writes them whole or raises want-write
        except (ssl.SSLWantWriteError, BlockingIOError):
            d.out.append(data)
            sel.modify(d.sock, _RW, d)
        except OSError:
            lost(d)
            return
        d.last_tx = time.monotonic()

    def flush(d: _Device) -> None:
        while d.out:
            try:
                d.sock.send(d.out[0])  # a retried SSL write must repeat the same bytes
            except (ssl.SSLWantWriteError, BlockingIOError):
                return
            except OSError:
                lost(d)
                return
            d.out.pop(0)
        sel.modify(d.sock, _READ, d)

    def lost(d: _Device) -> None:
        if d.connected:
            counters.disconnects += 1
        d.connected = False
        if d.sock is not None:
            try:
                sel.unregister(d.sock)
            except (KeyError, ValueError):
                pass
            d.sock.close()
            d.sock = None

    def publish(d: _Device, ts_ms: int) -> None:
        ts = ts_ms if ts_ms > d.last_ts else d.last_ts + 1  # one row per (device, metric, ts)
        d.last_ts = ts
        if not d.first_ts:
            d.first_ts = ts
        body = render(ts, d.sent)
        if qos:
            pid = d.next_pid = d.next_pid % 65535 + 1
            d.inflight += 1
            data = p.publish(d.first, d.topic, pid, body)
        else:
            data = b"".join((d.first, p.varint(len(d.topic) + 1 + len(body)), d.topic, b"\x00", body))
        d.sent += 1
        counters.sent += 1
        if not qos:
            d.acked += 1
            counters.acked += 1
        send(d, data)

    def readable(d: _Device) -> None:
        sock, buf = d.sock, d.rx
        while True:
            try:
                chunk = sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            except OSError:
                lost(d)
                return
            if not chunk:
                lost(d)
                return
            buf += chunk
            # a short read drained the socket (the selector is level-triggered and reports the rest):
            # asking again only to be told "want read" cost a syscall and an exception per PUBACK
            if len(chunk) < 65536 and not sock.pending():
                break
        packets, used = p.split(buf)
        del buf[:used]
        for kind, _flags, body in packets:
            if kind == p.PUBACK:
                d.inflight -= 1
                if p.reason_of(body, 2) >= 0x80:
                    d.refused += 1
                    counters.refused += 1
                else:
                    d.acked += 1
                    counters.acked += 1
            elif kind == p.DISCONNECT:
                lost(d)
                return
        if d.owed and d.connected:
            ts = time.time_ns() // 1_000_000
            while d.owed and d.inflight < d.inflight_max:
                d.owed -= 1
                counters.owed -= 1
                publish(d, ts)

    def pump(timeout: float) -> None:
        for key, events in sel.select(timeout):
            d = key.data
            if events & selectors.EVENT_READ and d.sock is not None:
                readable(d)
            if events & selectors.EVENT_WRITE and d.sock is not None:
                flush(d)

    rate, t0, due_base, sent_base = 0.0, time.monotonic(), 0, 0
    next_stats = next_misc = next_tick = time.monotonic()
    rr = 0
    stopping = False
    while not stopping:
        try:
            while True:
                msg = ctrl.get_nowait()
                if msg[0] == "rate":
                    rate, t0, due_base, sent_base = float(msg[1]), time.monotonic(), 0, counters.sent
                elif msg[0] == "stop":
                    stopping = True
        except queue.Empty:
            pass
        now = time.monotonic()
        if rate > 0 and live:
            due = int((now - t0) * rate) - (counters.sent - sent_base) - due_base - counters.owed
            ts_now = time.time_ns() // 1_000_000
            n_live = len(live)
            for _ in range(min(due, n_live * 4 + 1000)):
                d = live[rr]
                rr = rr + 1 if rr + 1 < n_live else 0
                if not d.connected:
                    counters.skipped += 1
                    due_base += 1
                elif qos and d.inflight >= d.inflight_max:
                    d.owed += 1
                    counters.owed += 1
                else:
                    publish(d, ts_now)
        # sleep to the next tick, then serve every socket that became ready meanwhile in one pass: waking
        # for each PUBACK as it arrives cost more than the publish itself at low rates
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        next_tick = max(next_tick + TICK_S, time.monotonic())
        pump(0)
        now = time.monotonic()
        if now >= next_misc:
            next_misc = now + MISC_EVERY_S
            idle = now - spec.keepalive / 2
            for d in live:
                if d.connected and d.last_tx < idle:
                    send(d, p.PINGREQ_PACKET)
        if now >= next_stats:
            next_stats = now + STATS_EVERY_S
            out.put(("stats", spec.worker_id, _snapshot(counters, live)))
    # let outstanding PUBACKs arrive before reporting
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and counters.acked + counters.refused < counters.sent:
        pump(0.05)
    final = _snapshot(counters, live)
    final["devices"] = {d.device_id: [d.sent, d.acked, d.first_ts, d.last_ts] for d in devices}
    out.put(("final", spec.worker_id, final))
    for d in live:
        if d.connected and d.sock is not None:
            try:
                d.sock.setblocking(True)
                d.sock.settimeout(2)
                d.sock.sendall(p.DISCONNECT_PACKET)
                d.sock.close()
            except OSError:
                pass


def _snapshot(c: _Counters, live: list[_Device]) -> dict:
    t = os.times()
    return {"sent": c.sent, "acked": c.acked, "refused": c.refused, "skipped": c.skipped,
            "disconnects": c.disconnects, "connected": sum(d.connected for d in live),
            "cpu_s": t.user + t.system, "rss": _rss()}


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
