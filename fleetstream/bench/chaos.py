"""The reliability suite (``make chaos``, ``fleetstream bench --chaos``): the benchmark's own stack under
steady load, with the supervisor watching it as ``fleetstream up`` does, and one component killed with
SIGKILL per round. Each round measures how long the stack took to come back by itself and, after the
drain, how many of the readings acknowledged to devices during that round were stored (adr/0113).

A round runs its own load-generator segment, so the sent-vs-stored audit can be split by round: the
generator's timestamps are send times, strictly increasing per device, and segments never overlap.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

from fleetstream.sim import Generator
from fleetstream.sim.payloads import points_per_message
from fleetstream.stack import kafka, mosquitto, postgres
from fleetstream.stack.supervisor import replica_port
from schemas import topics

from . import audit
from .config import VICTIMS  # noqa: F401 - where callers found it
from .probes import LagSampler, TopicLatencyProbe
from .runner import (
    ACTIVITY_GROUP,
    ACTIVITY_TOPIC,
    VALIDATE_GROUP,
    Run,
    _drain,
    _first_metric,
    _high_watermarks,
    say,
)


def victim_known(name: str, replicas: dict[str, int]) -> bool:
    """A component of VICTIMS, or ``<role>.<i>``: replica i of a role run ``replicas[role]`` times (adr/0134)."""
    role, _, i = name.partition(".")
    return name in VICTIMS or (i.isdigit() and 0 < int(i) < replicas.get(role, 1))


def _role(victim: str) -> str:
    return victim.partition(".")[0]


def _replica(victim: str) -> int:
    return int(victim.partition(".")[2] or 0)


class ChaosRun(Run):
    def execute(self) -> dict:
        cfg = self.cfg
        self.report.update(kind="chaos", rounds=[])
        watching = threading.Event()
        watcher = threading.Thread(target=self.stack.watch, args=(watching,), name="supervisor", daemon=True)
        try:
            self.start_stack()
            self.stack.write_state()
            watcher.start()  # as `fleetstream up` does: every child is restarted when it dies
            fleet, took = self._provision()
            self.fleet, self.metric = fleet, _first_metric(cfg.payload)
            self.probe_devices = [d.device_id for d in fleet.devices[:cfg.probe_devices]]
            groups = {VALIDATE_GROUP: topics.TELEMETRY_RAW.name, self.s.sink_group_prefix: topics.TELEMETRY.name,
                      ACTIVITY_GROUP: ACTIVITY_TOPIC}
            for i in range(1, self.stack.replicas["gateway"] if self.s.clickhouse_embedded else 1):
                groups[f"{self.s.sink_group_prefix}-{i}"] = topics.TELEMETRY.name  # its own store (adr/0134)
            self.lag = LagSampler(self.s.kafka, groups)
            dlq_before = _retry(lambda: _high_watermarks(self.lag, topics.DEAD_LETTER.name))
            for victim in cfg.chaos:
                self.report["rounds"].append(self._round(victim))
            say(f"all rounds done; draining (≤{cfg.drain_timeout_s:.0f}s)")
            self.report["drain"] = _drain(self.lag, cfg.drain_timeout_s)
            dlq_after = _retry(lambda: _high_watermarks(self.lag, topics.DEAD_LETTER.name))
            self.report["dlq_records"] = sum(dlq_after.values()) - sum(dlq_before.values())
            self._dead_letters(dlq_before, dlq_after)
            self.lag.finish()
            watching.set()
            watcher.join(10)
            self.report["supervisor_events"] = self.stack.events
            self._audit_rounds(drained=all(v == 0 for v in self.report["drain"]["lag_after"].values()))
        finally:
            watching.set()
            if watcher.is_alive():  # no child restarted while the stack is being killed
                watcher.join(10)
            self.finish()
        self.report["load_avg_end"] = os.getloadavg()
        return self.report

    def _provision(self):
        from fleetstream.sim import provision

        fleet, took = provision(self.s, self.cfg.devices, out_dir=self.data_dir / "fleet", prefix="chaos")
        self.tenant = {"tenant_id": fleet.tenant_id, **fleet.extra}
        self.report["provisioning"] = {"devices": self.cfg.devices, "seconds": round(took, 1)}
        say(f"provisioned {self.cfg.devices} devices in {took:.1f}s")
        return fleet, took

    # -- one round ------------------------------------------------------------------------------------
    def _round(self, victim: str) -> dict:
        cfg = self.cfg
        rnd: dict = {"component": victim, "segments": []}
        gen = self._segment_start(rnd)
        t_round = time.time()
        # steady before the kill: the pipeline carries this round's readings end to end
        rnd["flowing_before_kill"] = self._wait(gen, lambda: self._stored_since(t_round), cfg.recover_timeout_s)
        failover = self._failover_start(victim)  # from before the settle: the steady rate it is compared with
        self._pump(gen, cfg.settle_s)
        child = self._victim(victim, rnd)
        rnd["killed_pid"] = child.pid
        live = LiveWatcher(f"ws://{self.s.host}:{self.s.gateway_port}/v1/stream", self.token, self.probe_devices)
        live.start()
        t_kill = time.time()
        rnd["killed_at"] = t_kill
        say(f"kill -9 {victim} (pid {child.pid}) at {gen.stats.acked} acked")
        os.kill(child.pid, signal.SIGKILL)
        marks: dict[str, float | None] = dict.fromkeys(("restarted", "healthy", "readyz", "flowing", "live",
                                                        "all_flowing"))
        progress = self._progress_of(victim)
        baseline = None
        deadline = time.monotonic() + cfg.recover_timeout_s
        while time.monotonic() < deadline and not all(v is not None for v in marks.values()):
            self._pump(gen, 0.5)
            if marks["restarted"] is None:
                marks["restarted"] = next((e["at"] for e in self.stack.events if e["component"] == child.name
                                           and e["event"] == "restarted" and e["at"] >= t_kill), None)
            if marks["restarted"] is not None and marks["healthy"] is None:
                if progress is None:
                    if _quiet(self._health_check(victim)):
                        marks["healthy"] = time.time()
                else:  # a role is healthy when the work it does moves on after its restart
                    current = _quiet_value(progress)
                    if baseline is None:
                        baseline = current
                    elif current is not None and current > baseline:
                        marks["healthy"] = time.time()
            if marks["readyz"] is None and _quiet(self._readyz):
                marks["readyz"] = time.time()
            if gen.stats.connected < rnd["segments"][-1]["connected"] and _quiet(self._broker_up):
                # the devices lost their broker: like real devices, they connect again (a new segment)
                self._segment_stop(gen, rnd)
                gen = self._segment_start(rnd)
            if marks["flowing"] is None and _quiet(lambda: self._stored_since(t_kill)):
                marks["flowing"] = time.time()
            if marks["all_flowing"] is None and _quiet(lambda: self._all_stored_since(t_kill)):
                # every probe device, spread over the partitions: whoever had the killed process's share
                # (its restarted self or a surviving replica) carries it again; the takeover time
                marks["all_flowing"] = time.time()
            if marks["live"] is None:
                marks["live"] = live.first_at_or_after(t_kill)
        live.stop()
        rnd["recovery_s"] = {k: (round(v - t_kill, 1) if v is not None else None) for k, v in marks.items()}
        rnd["recovered"] = all(v is not None for v in marks.values())
        rnd["time_to_recover_s"] = max(rnd["recovery_s"].values()) if rnd["recovered"] else None
        say(f"{victim}: {'back' if rnd['recovered'] else 'NOT back'} {rnd['recovery_s']}")
        self._pump(gen, cfg.settle_s)  # steady again after the recovery, still this round's segment
        if failover is not None:  # throughput and latency until the broker is back, and a settle after it
            rnd["failover"] = self._failover_end(failover, t_kill)
        self._segment_stop(gen, rnd)
        return rnd

    def _segment_start(self, rnd: dict) -> Generator:
        cfg = self.cfg
        gen = Generator(self.fleet, self.s.mqtt_broker_host, self.s.mqtt_tls_port, qos=cfg.qos, payload=cfg.payload,
                        workers=cfg.workers, max_rate=cfg.rate)
        connected = gen.start(timeout=120)
        gen.set_rate(cfg.rate)
        rnd["segments"].append({"connected": connected, "started_at": time.time()})
        return gen

    def _segment_stop(self, gen: Generator, rnd: dict) -> None:
        seg = rnd["segments"][-1]
        seg["sent_per_device"] = gen.stop()
        seg.update(sent=gen.stats.sent, acked=gen.stats.acked, refused=gen.stats.refused, skipped=gen.stats.skipped,
                   disconnects=gen.stats.disconnects, stopped_at=time.time())

    def _pump(self, gen: Generator, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            gen.poll(min(0.5, max(0.0, end - time.monotonic())))

    def _wait(self, gen: Generator, check, timeout: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if _quiet(check):
                return round(time.monotonic() - t0, 1)
            self._pump(gen, 0.5)
        return None

    # -- what "back" means --------------------------------------------------------------------------
    def _health_check(self, victim: str):
        s = self.s
        return {
            "kafka": lambda: kafka.kafka_ready(s.kafka),
            # a killed cluster broker is back when the cluster lists all its brokers again
            "kafka-controller": lambda: kafka.kafka_ready(s.kafka, s.kafka_brokers),
            "kafka-leader": lambda: kafka.kafka_ready(s.kafka, s.kafka_brokers),
            "mosquitto": self._broker_up,
            "postgres": lambda: postgres.postgres_ready(s.app_dsn),
            "gateway": lambda: self._readyz(_replica(victim)),
        }[_role(victim)]

    def _progress_of(self, victim: str):
        """For a role: a counter of its work (the worker's committed offsets, the connector's records on
        the raw topic); None for infrastructure, which has a health check of its own."""
        victim = _role(victim)
        if victim == "streams":
            return lambda: self.lag.lag() is not None and self.lag.progress[f"committed:{VALIDATE_GROUP}"]
        if victim == "connector-mqtt":
            return lambda: self.lag.lag() is not None and self.lag.progress[f"high:{topics.TELEMETRY_RAW.name}"]
        return None

    # -- a broker of the local cluster (adr/0133) ---------------------------------------------------------
    def _victim(self, victim: str, rnd: dict):
        if victim not in ("kafka-controller", "kafka-leader"):
            return next(c for c in self.stack.children if c.name == victim)
        if self.s.kafka_brokers < 3:
            raise RuntimeError(f"{victim} needs the local cluster: --kafka-brokers 3")
        node = kafka.active_controller(self.s) if victim == "kafka-controller" else self._busiest_leader()
        rnd["node_id"] = node
        return next(c for c in self.stack.children if c.name == f"kafka-{node}")

    def _busiest_leader(self) -> int:
        """The broker leading most partitions of the raw telemetry topic, other than the active controller
        (the round before killed that one)."""
        md = _retry(lambda: self.s.kafka.admin().list_topics(topics.TELEMETRY_RAW.name, timeout=10))
        counts: dict[int, int] = {}
        for p in md.topics[topics.TELEMETRY_RAW.name].partitions.values():
            counts[p.leader] = counts.get(p.leader, 0) + 1
        controller = _quiet_value(lambda: kafka.active_controller(self.s))
        ranked = sorted(counts, key=lambda n: (n == controller, -counts[n]))
        return ranked[0]

    def _failover_start(self, victim: str):
        """publish → validated-topic latency of every reading during a broker's failover (a probe like the
        live hub), and the work samples it is measured against."""
        if victim not in ("kafka-controller", "kafka-leader"):
            return None
        probe = TopicLatencyProbe(self.s.kafka, topics.TELEMETRY.name)
        probe.start()
        probe.measuring = True
        # the chaos run's lag sampler is polled, not a running thread: sample its work counters every second
        work: list[tuple[float, dict[str, int]]] = []
        halt = threading.Event()

        def sample() -> None:
            while not halt.wait(1.0):
                if _quiet(self.lag.lag):
                    work.append((time.monotonic(), dict(self.lag.progress)))

        threading.Thread(target=sample, name="chaos-failover-work", daemon=True).start()
        return probe, work, halt

    def _failover_end(self, failover, t_kill: float) -> dict:
        probe, work, halt = failover
        halt.set()
        probe.stop()
        kill_mono = time.monotonic() - (time.time() - t_kill)
        return {"latency_ms": {"publish_to_validated": probe.observed.summary(),
                               "publish_to_raw_append": probe.produced.summary()},
                "throughput": _throughput_recovery(work, kill_mono, self.cfg.rate, self.cfg.settle_s)}

    def _broker_up(self) -> bool:
        return mosquitto.mqtt_ready(self.s, self.stack.pki)

    def _readyz(self, replica: int = 0) -> bool:
        try:
            port = replica_port(self.s.gateway_port, replica)
            with urllib.request.urlopen(f"http://{self.s.host}:{port}/readyz", timeout=3) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def _stored_since(self, t: float, device: str | None = None) -> bool:
        """A probe device's reading sent after ``t`` is queryable through the gateway (replica 0)."""
        import httpx

        frm = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        device = device or self.probe_devices[0]
        r = httpx.get(f"http://{self.s.host}:{self.s.gateway_port}/v1/devices/{device}/telemetry",
                      params={"metric": self.metric, "from": frm, "limit": 1},
                      headers={"Authorization": f"Bearer {self.token()}"}, timeout=5)
        return r.status_code == 200 and bool(r.json().get("points"))

    def _all_stored_since(self, t: float) -> bool:
        self._flowing = getattr(self, "_flowing", {})
        if self._flowing.get("since") != t:
            self._flowing = {"since": t, "done": set()}
        for d in self.probe_devices:
            if d not in self._flowing["done"] and self._stored_since(t, d):
                self._flowing["done"].add(d)
        return len(self._flowing["done"]) == len(self.probe_devices)

    # -- the audit ------------------------------------------------------------------------------------
    def _dead_letters(self, start: dict[int, int], end: dict[int, int]) -> None:
        """This run's dead letters by reason, each given to the round whose load sent it (the payload's
        ``ts`` is the send time): a refused reading is not lost silently, but it is not stored either."""
        from confluent_kafka import TopicPartition

        from schemas import codec

        dlq = codec("dead_letter")
        c = self.s.kafka.consumer(f"chaos-dlq-{time.time_ns()}", {"enable.auto.commit": False})
        records = []
        try:
            c.assign([TopicPartition(topics.DEAD_LETTER.name, p, o) for p, o in start.items() if end.get(p, 0) > o])
            want = sum(max(0, end.get(p, 0) - o) for p, o in start.items())
            deadline = time.monotonic() + 60
            while len(records) < want and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    records.append(dlq.decode(m.value()))
        finally:
            c.close()
        for rec in records:
            if rec.get("tenant_id") != self.tenant["tenant_id"]:
                continue
            ts = _payload_ts(rec.get("raw") or b"")
            rnd = next((r for r in self.report["rounds"] if ts is not None and any(
                s["started_at"] * 1000 <= ts <= s.get("stopped_at", 0) * 1000 for s in r["segments"])), None)
            where = rnd.setdefault("dead_letters", {}) if rnd else self.report.setdefault("dead_letters_unplaced", {})
            where[rec["reason_code"]] = where.get(rec["reason_code"], 0) + 1

    def _compare(self, stored: dict, keep: bool) -> dict:
        """Per-round and total delivery of one store against what the generator sent."""
        i, out, total = 0, {"rounds": []}, {}
        per_msg = points_per_message(self.cfg.payload)
        for rnd in self.report["rounds"]:
            parts = []
            for seg in rnd["segments"]:
                got = stored["windows"][i]
                i += 1
                sent = seg.get("sent_per_device", {}) if keep else seg.pop("sent_per_device", {})
                parts.append(audit.compare(sent, {**got, "physical_rows": got["physical"]}, per_msg))
            delivery = {k: sum(p[k] for p in parts) for k in parts[0]} if parts else {}
            out["rounds"].append({"component": rnd["component"], **delivery})
            for k, v in delivery.items():
                total[k] = total.get(k, 0) + v
        out["total"] = total
        return out

    def _audit_rounds(self, drained: bool) -> None:
        for child in list(self.stack.children):  # chdb: one process per path
            if _role(child.name) in ("gateway", "sink"):
                child.stop()
        windows = []
        for rnd in self.report["rounds"]:
            for seg in rnd["segments"]:
                firsts = [v[2] for v in seg.get("sent_per_device", {}).values() if v[2]]
                lasts = [v[3] for v in seg.get("sent_per_device", {}).values() if v[3]]
                windows.append([min(firsts), max(lasts)] if firsts else [0, 0])
        # each gateway replica's sink keeps its own embedded store (adr/0134): every one is audited
        stores = [self.s.chdb_dsn] + [f"{self.s.chdb_dsn}-{i}" for i in range(1, self.stack.replicas["gateway"])] \
            if self.s.clickhouse_embedded else [self.s.chdb_dsn]
        rounds_by_store = []
        for dsn in stores[1:]:
            try:
                other = audit.count_in_subprocess(dsn, self.tenant["tenant_id"], windows)
            except Exception as exc:
                rounds_by_store.append({"store": dsn, "error": repr(exc)})
                continue
            rounds_by_store.append({"store": dsn, **self._compare(other, keep=True)})
        try:
            stored = audit.count_in_subprocess(self.s.chdb_dsn, self.tenant["tenant_id"], windows)
        except Exception as exc:
            self.report["delivery"] = {"error": repr(exc)}
            return
        if rounds_by_store:
            self.report["delivery_other_stores"] = rounds_by_store
        i = 0
        total: dict[str, int] = {}
        per_msg = points_per_message(self.cfg.payload)
        for rnd in self.report["rounds"]:
            parts = []
            for seg in rnd["segments"]:
                got = stored["windows"][i]
                i += 1
                parts.append(audit.compare(seg.pop("sent_per_device", {}), {**got, "physical_rows": got["physical"]},
                                           per_msg))
            rnd["delivery"] = {k: sum(p[k] for p in parts) for k in parts[0]} if parts else {}
            for k, v in rnd["delivery"].items():
                total[k] = total.get(k, 0) + v
        self.report["delivery"] = {**total, "drained": drained}
        self.report["rollups"] = audit.attribute_rollups(stored.get("rollups", {}), self.report["rounds"])
        say(f"delivery: {self.report['delivery']}; rollups: {self.report['rollups'].get('summary')}")


def _throughput_recovery(work: list[tuple[float, dict[str, int]]], t_kill: float, rate: float,
                         settle_s: float, window_s: float = 3.0, enough: float = 0.9) -> dict:
    """From the lag sampler's work counters (monotonic time, records so far per topic/group): records/s into
    the raw topic (the connector's acknowledged produce) and committed by validate, over sliding windows;
    before the kill (the steady rate), the lowest after it, and how long after the kill each rate was back
    at ``enough`` of the offered rate (0 when it never dipped)."""
    out: dict = {"offered_per_s": rate, "window_s": window_s}
    for name, key in (("raw", f"high:{topics.TELEMETRY_RAW.name}"), ("validated", f"committed:{VALIDATE_GROUP}")):
        pts = [(t, w[key]) for t, w in work if key in w]
        rates = []  # (window end, records/s over the window)
        for i, (t, v) in enumerate(pts):
            j = next((k for k in range(i, -1, -1) if t - pts[k][0] >= window_s), None)
            if j is not None:
                rates.append((t, (v - pts[j][1]) / (t - pts[j][0])))
        before = [r for t, r in rates if t_kill - settle_s <= t <= t_kill]
        after = [(t, r) for t, r in rates if t > t_kill]
        dip = next((t for t, r in after if r < enough * rate), None)
        back = next((t for t, r in after if dip is not None and t > dip and r >= enough * rate), None)
        out[name] = {"before_per_s": round(sum(before) / len(before)) if before else None,
                     "lowest_after_per_s": round(min((r for _, r in after), default=0)),
                     "recovered_after_s": 0.0 if dip is None else (round(back - t_kill, 1) if back else None)}
    return out


def _quiet(check) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


def _payload_ts(raw: bytes) -> int | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    doc = doc[0] if isinstance(doc, list) and doc else doc
    return doc.get("ts") if isinstance(doc, dict) else None


def _quiet_value(fn):
    try:
        return fn()
    except Exception:
        return None


def _retry(fn, timeout: float = 120):
    """``fn()``, asked again while Kafka's metadata settles after a broker restart."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


class LiveWatcher(threading.Thread):
    """A WebSocket client of the gateway's live stream (adr/0063) that connects again whenever the
    connection drops; records when each telemetry event arrived, to tell when live delivery is back."""

    def __init__(self, url: str, token, devices: list[str]):
        super().__init__(name="chaos-live", daemon=True)
        self.url, self.token, self.devices = url, token, devices
        self.arrivals: list[tuple[float, int]] = []  # (arrival time, reading ts ms)
        self._halt = threading.Event()

    def first_at_or_after(self, t: float) -> float | None:
        return next((at for at, ts in list(self.arrivals) if ts >= t * 1000), None)

    def run(self) -> None:
        from websockets.sync.client import connect

        while not self._halt.is_set():
            try:
                with connect(f"{self.url}?access_token={self.token()}", open_timeout=5) as ws:
                    json.loads(ws.recv(5))
                    ws.send(json.dumps({"type": "subscribe", "id": "chaos", "devices": self.devices,
                                        "kinds": ["telemetry"]}))
                    while not self._halt.is_set():
                        try:
                            msg = json.loads(ws.recv(0.5))
                        except TimeoutError:
                            continue
                        if msg.get("type") == "telemetry":
                            self.arrivals.append((time.time(), msg.get("ts", 0)))
            except Exception:  # the gateway is away: try again
                self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
