"""What the benchmark watches while the load runs, each on its own thread: records arriving on the raw
topic, consumer-group lag, queryability through the gateway, and every component's CPU and memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import psutil
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from runtime.kafka import HOT_CONSUMER, READER, KafkaLike, clients
from schemas.codec import telemetry_event_time as event_time_of

from .stats import Reservoir


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (those gone are left out)."""
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def now_ms() -> float:
    return time.time_ns() / 1e6


class Sampler(threading.Thread):
    def __init__(self, name: str, every_s: float):
        super().__init__(name=name, daemon=True)
        self.every_s, self._halt = every_s, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            t0 = time.monotonic()
            try:
                self.sample()
            except Exception as exc:  # a probe failing must not end the run; it is reported
                self.errors = getattr(self, "errors", 0) + 1
                self.last_error = repr(exc)
            self._halt.wait(max(0.0, self.every_s - (time.monotonic() - t0)))
        self.finish()

    def sample(self) -> None: ...

    def finish(self) -> None: ...

    def stop(self) -> None:
        self._halt.set()
        self.join(15)


class TopicLatencyProbe(Sampler):
    """publish → Kafka: for every record on ``topic``, the record's own timestamp (the connector's produce
    time) and the moment this consumer saw it, each minus the device's send time."""

    def __init__(self, kafka: KafkaLike, topic: str):
        super().__init__(f"probe-{topic}", 0)
        self.topic = topic
        # the probe is a consumer like the live hub: it waits as they do, so it neither flatters its own
        # latency nor costs the broker more than a platform consumer
        self.c = clients(kafka).consumer(f"fleetstream-bench-{time.time_ns()}", READER,
                                                  {"auto.offset.reset": "latest"}, HOT_CONSUMER)
        md = self.c.list_topics(topic, timeout=10).topics[topic]
        self.c.assign([TopicPartition(topic, p, -1) for p in md.partitions])  # only what comes from now on
        self.produced, self.observed = Reservoir(), Reservoir()
        self.records = 0
        self.measuring = False

    def sample(self) -> None:
        # block for the first record only, then take what its fetch brought: consume(5000, 0.05) alone held
        # every record until 5,000 arrived or 50 ms passed, which added 0–50 ms to each reading below ~100k
        # msg/s (adr/0213); the probe's own delay is now its fetch wait (HOT_CONSUMER), as the hub's
        first = self.c.poll(0.05)
        if first is None:
            return
        seen = now_ms()
        for m in (first, *self.c.consume(5000, timeout=0)):
            if m.error():
                continue
            self.records += 1
            if not self.measuring:
                continue
            try:
                sent = event_time_of(m.value())
            except IndexError:
                continue
            self.observed.add(seen - sent)
            self.produced.add(m.timestamp()[1] - sent)

    def finish(self) -> None:
        self.c.close()


class LagSampler(Sampler):
    """Consumer lag per group = Σ(high watermark − committed offset) over the partitions it reads."""

    def __init__(self, kafka: KafkaLike, groups: dict[str, str], every_s: float = 1.0):
        super().__init__("probe-lag", every_s)
        self.kafka = clients(kafka)
        self.admin = self.kafka.admin()
        self.wm = self.kafka.consumer(f"fleetstream-bench-wm-{time.time_ns()}")
        self.groups = groups  # group id → topic
        # committed offsets through a consumer of each group (OffsetFetch, no join), not the admin client:
        # librdkafka ≤ 2.16's ListConsumerGroupOffsets aborts the process when the coordinator's connection
        # drops mid-request (librdkafka#4605, fix pending in #5397), which is exactly what a broker kill does
        self.readers = {g: self.kafka.consumer(g, {"enable.auto.commit": False}) for g in groups}
        self.parts = {t: list(self.wm.list_topics(t, timeout=10).topics[t].partitions) for t in set(groups.values())}
        self.series: list[dict] = []
        self.t0 = time.monotonic()
        self.lock = threading.Lock()  # the drain asks for lag from another thread
        self.progress: dict[str, int] = {}
        self.work: list[tuple[float, dict[str, int]]] = []

    def lag(self) -> dict[str, int | None]:
        with self.lock:
            try:
                return self._lag()
            except KafkaException:
                # after a broker restart the client may keep a fenced leader epoch for good: start afresh
                self.admin = self.kafka.admin()
                raise

    def _lag(self) -> dict[str, int | None]:
        # one ListOffsets request for every partition, not one per partition: the probe's own requests
        # show up as broker CPU in the report
        spec = OffsetSpec.latest()
        res = self.admin.list_offsets({TopicPartition(t, p): spec for t, ps in self.parts.items() for p in ps},
                                      request_timeout=5)
        high: dict[str, dict[int, int]] = {t: {} for t in self.parts}
        for tp, fut in res.items():
            offset = fut.result().offset
            if offset < 0:  # no leader answered for it (a broker's failover): a sum without it is no sample
                raise RuntimeError(f"no high watermark for {tp.topic}[{tp.partition}]")
            high[tp.topic][tp.partition] = offset
        out: dict[str, int | None] = {}
        # how much each stage has done so far: records written to each topic, records each group committed
        self.progress = {f"high:{t}": sum(v.values()) for t, v in high.items()}
        for group, topic in self.groups.items():
            try:
                offsets = self.readers[group].committed([TopicPartition(topic, p) for p in self.parts[topic]],
                                                        timeout=5)
            except Exception:
                out[group] = None
                continue
            total = done = 0
            for tp in offsets:
                committed = tp.offset if tp.offset >= 0 else 0
                total += max(0, high[topic][tp.partition] - committed)
                done += committed
            out[group] = total
            self.progress[f"committed:{group}"] = done
        return out

    def sample(self) -> None:
        lag = self.lag()
        self.series.append({"t": round(time.monotonic() - self.t0, 1), **lag})
        self.work.append((time.monotonic(), dict(self.progress)))

    def finish(self) -> None:
        self.wm.close()
        for reader in self.readers.values():
            reader.close()


class QueryProbe(Sampler):
    """publish → queryable: polls the gateway for a few probe devices' newest points, one device per
    ``every_s``; a point first seen by the poll answered at T was queryable at most ``T - sent`` after its
    send (``latency``, an upper bound) and not yet when the device's previous poll was sent at T0
    (``floor``: ``max(T0, sent) - sent``, a lower bound). The truth lies between: the probe's resolution is
    ``len(devices) × every_s`` (0.4 s with 4 devices), and the mean of the two bounds is a fair estimate."""

    def __init__(self, gateway_url: str, token: Callable[[], str], devices: list[str], metric: str,
                 every_s: float = 0.1):
        super().__init__("probe-query", every_s)
        self.http = httpx.Client(base_url=gateway_url, timeout=10)
        self.token, self.devices, self.metric = token, devices, metric
        self.latest: dict[str, str | None] = dict.fromkeys(devices)
        self.latency, self.floor = Reservoir(), Reservoir()
        self.asked: dict[str, float | None] = dict.fromkeys(devices)  # when each device's last poll was sent
        self.i = 0
        self.measuring = False
        self.failures = 0

    def sample(self) -> None:
        dev = self.devices[self.i % len(self.devices)]
        self.i += 1
        params = {"metric": self.metric, "limit": 10000}
        if self.latest[dev]:
            params["from"] = self.latest[dev]
        headers = {"Authorization": f"Bearer {self.token()}"}
        asked, before = now_ms(), self.asked[dev]
        r = self.http.get(f"/v1/devices/{dev}/telemetry", params=params, headers=headers)
        seen = now_ms()
        if r.status_code != 200:
            self.failures += 1
            return
        self.asked[dev] = asked  # an answered poll: what it did not return was not visible when it was sent
        points = r.json()["points"]
        if not points:
            return
        prev = self.latest[dev]
        for p in points:
            if prev is not None and p["ts"] <= prev:
                continue
            if self.measuring and prev is not None:  # the first poll only finds the starting point
                sent = _iso_ms(p["ts"])
                self.latency.add(seen - sent)
                self.floor.add(max(before or sent, sent) - sent)
        self.latest[dev] = points[-1]["ts"]

    def finish(self) -> None:
        self.http.close()


def _iso_ms(s: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000


class ResourceSampler(Sampler):
    """CPU (% of one core) and RSS per component, each component being a process and its descendants.

    Besides the per-second CPU series, a timeline row every ``timeline_every_s`` (CPU % over the interval, RSS
    at its end) and every RSS sample are kept, so a long run shows whether a component grows (``growth``)."""

    def __init__(self, components: Callable[[], dict[str, tuple[list[int], bool]]], every_s: float = 1.0,
                 timeline_every_s: float = 10.0):
        super().__init__("probe-resources", every_s)
        self.components = components
        self._procs: dict[int, psutil.Process] = {}
        self.cpu: dict[str, list[float]] = {}
        self.peak_rss: dict[str, int] = {}
        self.rss: dict[str, int] = {}
        self.rss_samples: dict[str, list[tuple[float, int]]] = {}
        self.cpu_total_s: dict[str, float] = {}
        self._last: dict[str, tuple[float, float]] = {}
        self.machine: list[float] = []
        self.t0 = time.monotonic()
        self.timeline_every_s = timeline_every_s
        self.timeline: list[dict] = []
        self._row_start: tuple[float, dict[str, float]] | None = None
        psutil.cpu_percent(None)

    def _tree(self, pids: list[int], recursive: bool) -> list[psutil.Process]:
        out = []
        for pid in pids:
            try:
                p = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
                out.append(p)
                if recursive:
                    out.extend(self._procs.setdefault(c.pid, c) for c in p.children(recursive=True))
            except psutil.Error:
                continue
        return out

    def sample(self) -> None:
        now = time.monotonic()
        self.machine.append(psutil.cpu_percent(None))
        for name, (pids, recursive) in self.components().items():
            cpu_s, rss = 0.0, 0
            for p in self._tree(pids, recursive):
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        cpu_s += t.user + t.system
                        rss += p.memory_info().rss
                except psutil.Error:
                    continue
            last = self._last.get(name)
            if last:
                self.cpu.setdefault(name, []).append(100 * (cpu_s - last[1]) / max(1e-6, now - last[0]))
            self._last[name] = (now, cpu_s)
            self.cpu_total_s[name] = cpu_s
            self.rss[name] = rss
            self.rss_samples.setdefault(name, []).append((round(now - self.t0, 1), rss))
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
        self._timeline_row(now)

    def _timeline_row(self, now: float) -> None:
        start = self._row_start
        if start is not None and now - start[0] < self.timeline_every_s - 0.05:
            return
        row: dict = {"t": round(now - self.t0), "rss_mb": {k: round(v / 2**20, 1) for k, v in self.rss.items()}}
        if start is not None:
            dt = max(1e-6, now - start[0])
            row["cpu_pct"] = {k: round(100 * (v - start[1].get(k, v)) / dt, 1) for k, v in self.cpu_total_s.items()}
        self.timeline.append(row)
        self._row_start = (now, dict(self.cpu_total_s))

    def growth(self, window_s: float = 60.0) -> dict:
        """RSS per component: mean over the first and the last ``window_s`` of the samples (a third of the run
        when it is shorter than three windows, so the two never overlap), and the change."""
        out = {}
        for name, samples in self.rss_samples.items():
            if len(samples) < 2:
                continue
            t_first, t_last = samples[0][0], samples[-1][0]
            w = min(window_s, (t_last - t_first) / 3)
            first = [r for t, r in samples if t <= t_first + w]
            last = [r for t, r in samples if t >= t_last - w]
            a, b = sum(first) / len(first) / 2**20, sum(last) / len(last) / 2**20
            out[name] = {"first_mb": round(a, 1), "last_mb": round(b, 1), "growth_mb": round(b - a, 1),
                         "growth_pct": round(100 * (b - a) / a, 1) if a else None,
                         "peak_mb": round(self.peak_rss.get(name, 0) / 2**20, 1), "span_s": round(t_last - t_first),
                         "window_s": round(w)}
        return out

    def summary(self, since: int = 0) -> dict:
        out = {}
        for name, series in self.cpu.items():
            s = series[since:] or series
            out[name] = {"cpu_pct_mean": round(sum(s) / len(s), 1), "cpu_pct_max": round(max(s), 1),
                         "peak_rss_mb": round(self.peak_rss.get(name, 0) / 2**20, 1)}
        return out


class WebSocketProbe(threading.Thread):
    """publish → WebSocket client: subscribes ``/v1/stream`` to the probe devices' telemetry and records
    arrival time − ``ts`` for every event (the gateway's live hub, adr/0063)."""

    def __init__(self, url: str, token: str, devices: list[str]):
        super().__init__(name="probe-websocket", daemon=True)
        self.url, self.token, self.devices = url, token, devices
        self.latency = Reservoir()
        self.measuring = False
        self.events = self.dropped = 0
        self.error: str | None = None
        self.ready = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        import json

        from websockets.sync.client import connect

        try:
            with connect(f"{self.url}?access_token={self.token}", open_timeout=10, max_size=2**22) as ws:
                if json.loads(ws.recv(10)).get("type") != "ready":
                    raise RuntimeError("no ready message")
                ws.send(json.dumps({"type": "subscribe", "id": "bench", "devices": self.devices,
                                    "kinds": ["telemetry"]}))
                while not self._halt.is_set():
                    try:
                        msg = json.loads(ws.recv(0.5))
                    except TimeoutError:
                        continue
                    seen = now_ms()
                    kind = msg.get("type")
                    if kind == "subscribed":
                        self.ready.set()
                    elif kind == "telemetry":
                        self.events += 1
                        if self.measuring:
                            self.latency.add(seen - msg["ts"])
                    elif kind == "dropped":
                        self.dropped += msg.get("count", 0)
        except Exception as exc:  # reported, never fatal to the run
            self.error = repr(exc)
            self.ready.set()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
