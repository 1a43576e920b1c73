"""One load-generator process: many device connections driven by a single thread.

paho's ``loop_start`` costs a thread per client, which does not scale to thousands of devices per
process. Here one selector watches every client's socket; paho writes a publish straight to the socket
when no loop thread is attached, and ``loop_read``/``loop_write``/``loop_misc`` are called by hand.
Publishes are spread evenly in time: every tick sends the messages that are due since the start.
"""

from __future__ import annotations

import os
import queue
import selectors
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from .payloads import payload

TICK_S = 0.005
STATS_EVERY_S = 1.0
MISC_EVERY_S = 2.0


@dataclass
class WorkerSpec:
    worker_id: int
    host: str
    port: int
    tenant_id: str
    devices: list[tuple[str, str]]  # (device_id, cert_dir)
    qos: int = 1
    payload: str = "smart-meter"
    connect_threads: int = 4
    keepalive: int = 120
    inflight: int = 100


@dataclass(slots=True)
class _Device:
    device_id: str
    client: mqtt.Client
    topic: str
    last_ts: int = 0
    sent: int = 0
    acked: int = 0
    refused: int = 0
    first_ts: int = 0
    connected: bool = False
    watch_write: bool = False


@dataclass
class _Counters:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    skipped: int = 0
    disconnects: int = 0
    connect_failures: list[str] = field(default_factory=list)


def _client(spec: WorkerSpec, device_id: str, cert_dir: str, counters: _Counters) -> _Device:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=f"{cert_dir}/ca.crt")
    ctx.load_cert_chain(f"{cert_dir}/device.crt", f"{cert_dir}/device.key")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{spec.tenant_id}.{device_id}",
                    protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.max_inflight_messages_set(spec.inflight)
    dev = _Device(device_id, c, f"fs/{spec.tenant_id}/{device_id}/telemetry")
    c.user_data_set(dev)

    def on_publish(_c, d: _Device, _mid, reason, _props):
        if reason.is_failure:
            d.refused += 1
            counters.refused += 1
        else:
            d.acked += 1
            counters.acked += 1

    def on_connect(_c, d: _Device, _flags, reason, _props):
        d.connected = not reason.is_failure

    def on_disconnect(_c, d: _Device, _flags, _reason, _props):
        if d.connected:
            counters.disconnects += 1
        d.connected = False

    c.on_publish, c.on_connect, c.on_disconnect = on_publish, on_connect, on_disconnect
    return dev


def run_worker(spec: WorkerSpec, ctrl, out) -> None:
    """Process entry point. ``ctrl`` receives ("rate", msgs_per_s) and ("stop",); ``out`` gets
    ("connected", id, n, failures), periodic ("stats", id, {...}) and a final ("final", id, {...})."""
    counters = _Counters()
    render = payload(spec.payload)
    devices = [_client(spec, d, cd, counters) for d, cd in spec.devices]
    sel = selectors.DefaultSelector()

    def connect(dev: _Device) -> None:
        try:
            dev.client.connect(spec.host, spec.port, keepalive=spec.keepalive)
        except (OSError, ssl.SSLError) as exc:
            counters.connect_failures.append(f"{dev.device_id}: {exc}")

    with ThreadPoolExecutor(spec.connect_threads) as pool:  # TLS handshakes overlap their round trips
        list(pool.map(connect, devices))
    live = [d for d in devices if d.client.socket() is not None]
    for d in live:
        sel.register(d.client.socket(), selectors.EVENT_READ, d)
    # CONNACKs arrive through the selector
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(d.connected for d in live):
        _pump(sel, 0.05)
    out.put(("connected", spec.worker_id, sum(d.connected for d in live), counters.connect_failures[:5]))

    rate, t0, due_base, sent_base = 0.0, time.monotonic(), 0, 0
    next_stats = next_misc = time.monotonic()
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
            due = int((now - t0) * rate) - (counters.sent - sent_base) - due_base
            ts_now = time.time_ns() // 1_000_000
            for _ in range(min(due, len(live) * 4 + 1000)):
                d = live[rr]
                rr = rr + 1 if rr + 1 < len(live) else 0
                if not d.connected:
                    counters.skipped += 1
                    due_base += 1
                    continue
                ts = ts_now if ts_now > d.last_ts else d.last_ts + 1  # one row per (device, metric, ts)
                d.last_ts = ts
                if not d.first_ts:
                    d.first_ts = ts
                d.client.publish(d.topic, render(ts, d.sent), qos=spec.qos)
                d.sent += 1
                counters.sent += 1
                if spec.qos == 0:
                    d.acked += 1
                    counters.acked += 1
                sock = d.client.socket()
                if sock is not None and not d.watch_write and d.client.want_write():
                    d.watch_write = True
                    sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, d)
        _pump(sel, TICK_S)
        now = time.monotonic()
        if now >= next_misc:
            next_misc = now + MISC_EVERY_S
            for d in live:
                if d.client.socket() is not None:
                    d.client.loop_misc()
        if now >= next_stats:
            next_stats = now + STATS_EVERY_S
            out.put(("stats", spec.worker_id, _snapshot(counters, live)))
    # let outstanding PUBACKs arrive before reporting
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and counters.acked + counters.refused < counters.sent:
        _pump(sel, 0.05)
    final = _snapshot(counters, live)
    final["devices"] = {d.device_id: [d.sent, d.acked, d.first_ts, d.last_ts] for d in devices}
    out.put(("final", spec.worker_id, final))
    for d in live:
        if d.client.socket() is not None:
            d.client.disconnect()
            d.client.loop_write()


def _pump(sel: selectors.BaseSelector, timeout: float) -> None:
    for key, events in sel.select(timeout):
        d: _Device = key.data
        c = d.client
        sock = c.socket()
        if sock is None:
            _forget(sel, key.fileobj)
            continue
        if events & selectors.EVENT_READ:
            c.loop_read()
            # TLS may hold whole records in its own buffer, invisible to the selector
            while c.socket() is not None and c.socket().pending():
                c.loop_read()
        if events & selectors.EVENT_WRITE and c.socket() is not None:
            c.loop_write()
        if c.socket() is None:
            _forget(sel, key.fileobj)
        elif d.watch_write and not c.want_write():
            d.watch_write = False
            sel.modify(sock, selectors.EVENT_READ, d)


def _forget(sel: selectors.BaseSelector, fileobj) -> None:
    try:
        sel.unregister(fileobj)
    except (KeyError, ValueError):
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
