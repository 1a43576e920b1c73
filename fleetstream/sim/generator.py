"""The load generator: the fleet split over several worker processes (one Python process tops out near
20k QoS1 publishes/s, and a device connection is cheap only without a thread each), at a total rate the
caller can change while it runs (the benchmark's rate steps)."""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import time
from dataclasses import dataclass, field

from .fleet import Fleet
from .mqtt_worker import WorkerSpec, run_worker

DEVICES_PER_WORKER = 5000
RATE_PER_WORKER = 10000  # ~25 µs per publish since adr/0045: one process carries 10k msg/s in a quarter of a core


def auto_workers(devices: int, rate: float) -> int:
    return max(1, -(-devices // DEVICES_PER_WORKER), min(4, -(-int(rate) // RATE_PER_WORKER)))


@dataclass
class GeneratorStats:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    skipped: int = 0
    disconnects: int = 0
    connected: int = 0
    cpu_s: float = 0.0
    rss: int = 0
    per_worker: dict[int, dict] = field(default_factory=dict)


class Generator:
    """:param fleet: devices and their certificates.
    :param workers: processes; ``None`` chooses from the fleet size and the highest rate expected."""

    def __init__(self, fleet: Fleet, host: str, port: int, *, qos: int = 1, payload: str = "smart-meter",
                 workers: int | None = None, max_rate: float = 1000.0):
        n = min(len(fleet.devices), workers or auto_workers(len(fleet.devices), max_rate))
        self.ctx = mp.get_context("spawn")  # the parent holds Kafka client threads: never fork it
        self.out = self.ctx.Queue()
        self.ctrls = [self.ctx.Queue() for _ in range(n)]
        self.specs = [WorkerSpec(i, host, port, fleet.tenant_id,
                                 [(d.device_id, d.cert_dir, d.tenant_id) for d in fleet.devices[i::n]], qos=qos, payload=payload)
                      for i in range(n)]
        self.procs: list[mp.Process] = []
        self.stats = GeneratorStats()
        self.finals: dict[int, dict] = {}
        self.connect_s = 0.0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid]

    def start(self, timeout: float = 600) -> int:
        """Starts the workers and waits until every device connected (or failed); returns connected count."""
        t0 = time.monotonic()
        for spec, ctrl in zip(self.specs, self.ctrls, strict=True):
            p = self.ctx.Process(target=run_worker, args=(spec, ctrl, self.out), name=f"fleet-gen-{spec.worker_id}",
                                 daemon=True)
            p.start()
            self.procs.append(p)
        connected, waiting = 0, len(self.procs)
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            msg = self._next(1.0)
            if msg and msg[0] == "connected":
                connected += msg[2]
                waiting -= 1
                for failure in msg[3]:
                    print(f"generator: connect failed: {failure}", file=sys.stderr)
            if not any(p.is_alive() for p in self.procs):
                break
        self.connect_s = time.monotonic() - t0
        self.stats.connected = connected
        return connected

    def set_rate(self, msgs_per_s: float) -> None:
        share = msgs_per_s / len(self.ctrls)
        for ctrl in self.ctrls:
            ctrl.put(("rate", share))

    def poll(self, timeout: float = 0.0) -> GeneratorStats:
        """Drains worker reports; call it regularly (the progress line and the final counts come from it)."""
        end = time.monotonic() + timeout
        while True:
            msg = self._next(max(0.0, end - time.monotonic()))
            if msg is None:
                return self.stats
            kind, wid, body = msg[0], msg[1], msg[2] if len(msg) > 2 else None
            if kind in ("stats", "final"):
                self.stats.per_worker[wid] = body
                if kind == "final":
                    self.finals[wid] = body
                self._aggregate()

    def _aggregate(self) -> None:
        s = self.stats
        for f in ("sent", "acked", "refused", "skipped", "disconnects", "connected", "cpu_s", "rss"):
            setattr(s, f, sum(w.get(f, 0) for w in s.per_worker.values()))

    def _next(self, timeout: float):
        try:
            return self.out.get(timeout=timeout) if timeout > 0 else self.out.get_nowait()
        except queue.Empty:
            return None

    def stop(self, timeout: float = 30) -> dict[str, list[int]]:
        """Stops publishing, waits for outstanding acknowledgements, returns per-device
        ``[sent, acked, first_ts, last_ts]``."""
        for ctrl in self.ctrls:
            ctrl.put(("stop",))
        deadline = time.monotonic() + timeout
        while len(self.finals) < len(self.procs) and time.monotonic() < deadline:
            self.poll(0.5)
            if not any(p.is_alive() for p in self.procs) and len(self.finals) < len(self.procs):
                self.poll(0.5)
                break
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        devices: dict[str, list[int]] = {}
        for f in self.finals.values():
            devices.update(f.get("devices", {}))
        return devices
