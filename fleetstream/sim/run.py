"""``fleetstream simulate``: provision (or reuse) a fleet and publish at a fixed rate, with progress."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from runtime.settings import Settings

from .fleet import Fleet, provision_or_reuse
from .generator import Generator

PROTOCOLS = ("mqtt",)  # http and coap join when their ingest endpoints land (connectors issue)


def simulate(s: Settings, *, fleet_file: Path | None, devices: int, rate: float | None, interval: float,
             protocol: str = "mqtt", qos: int = 1, payload: str = "smart-meter", duration: float | None = None,
             workers: int | None = None, quiet: bool = False) -> dict:
    if protocol not in PROTOCOLS:
        raise SystemExit(f"protocol {protocol!r} is not available yet; available: {', '.join(PROTOCOLS)}")
    if fleet_file is not None:
        fleet = Fleet.load(fleet_file)
    else:
        fleet = provision_or_reuse(s, devices, s.root / "sim" / f"fleet-{devices}.json")
    rate = rate if rate is not None else len(fleet.devices) / interval
    gen = Generator(fleet, s.mqtt_broker_host, s.mqtt_tls_port, qos=qos, payload=payload, workers=workers,
                    max_rate=rate)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    connected = gen.start()
    if not quiet:
        print(f"simulator: {connected}/{len(fleet.devices)} devices connected in {gen.connect_s:.1f}s "
              f"({len(gen.procs)} processes); publishing {rate:g} msg/s QoS{qos} {payload}", flush=True)
    gen.set_rate(rate)
    t0, last_sent, last_t = time.monotonic(), 0, time.monotonic()
    while not stop.is_set() and (duration is None or time.monotonic() - t0 < duration):
        st = gen.poll(1.0)
        now = time.monotonic()
        if not quiet and sys.stderr.isatty():
            print(f"\r{now - t0:7.0f}s sent {st.sent} acked {st.acked} ({(st.sent - last_sent) / (now - last_t):,.0f}/s) "
                  f"connected {st.connected} cpu {st.cpu_s:.1f}s  ", end="", file=sys.stderr, flush=True)
        last_sent, last_t = st.sent, now
    gen.stop()
    st = gen.stats
    summary = {"devices": len(fleet.devices), "connected": connected, "sent": st.sent, "acked": st.acked,
               "refused": st.refused, "skipped": st.skipped, "seconds": round(time.monotonic() - t0, 1),
               "generator_cpu_s": round(st.cpu_s, 1)}
    if not quiet:
        print("\nsimulator: " + " ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    return summary
