"""The telemetry sink's hop alone (adr/0212): how long a record waits from reaching the sink's consumer to being
queryable, and the process CPU per record, for this tree's ``BatchingSink`` or another tree's (A/B back to back).

Real chdb and the real telemetry sink; the Kafka consumer is a stand-in that hands over records in fetch-sized
chunks every 100 ms (the telemetry sink's fetch wait, ``SINK_CONSUMER``) at ``rate`` msg/s (smart-meter: 3
points each). Latency = the insert returned − the record was created; the chunking adds 0–100 ms of it, as the
fetch does in the stack.

    .venv/bin/python scripts/sink_hop_latency.py RATE SECONDS [--base DIR]   # DIR: `git archive main | tar -x`
    .venv/bin/python scripts/sink_hop_latency.py --insert-cost                # CPU per insert by rows per insert
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import resource
import sys
import tempfile
import threading
import time

from schemas import codec, topics
from schemas.codec import bind_local_ids
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.schema import create_all
from sinks.clickhouse.sink import ClickHouseTelemetrySink

FETCH_S = 0.1


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Msg:
    __slots__ = ("v", "o")

    def __init__(self, v: bytes, o: int):
        self.v, self.o = v, o

    def value(self) -> bytes:
        return self.v

    def offset(self) -> int:
        return self.o

    def partition(self) -> int:
        return 0

    def topic(self) -> str:
        return topics.TELEMETRY.name

    def error(self):
        return None


class Consumer:
    """``consume(n, timeout)`` with librdkafka's semantics: returns at n records or at the timeout."""

    def __init__(self):
        self.q: collections.deque = collections.deque()
        self.cv = threading.Condition()

    def put(self, msgs: list) -> None:
        with self.cv:
            self.q.extend(msgs)
            self.cv.notify_all()

    def consume(self, n: int, timeout: float) -> list:
        end = time.monotonic() + timeout
        with self.cv:
            while len(self.q) < n:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            return [self.q.popleft() for _ in range(min(n, len(self.q)))]

    def commit(self, **_kw) -> None:
        pass

    def assignment(self) -> list:
        return []

    def close(self) -> None:
        pass


def _values(n: int) -> list[bytes]:
    c, now = codec("telemetry"), int(time.time() * 1000)
    return [c.encode({"tenant_id": "t1", "device_id": f"d-{i % 200}", "event_time": now + i, "receive_time": now + i,
                      "protocol": "mqtt", "values": {"voltage": 230.1, "current": 1.2, "power": 276.0},
                      "device_type": None, "tags": []}) for i in range(n)]


def _store() -> ClickHouse:
    ch = ClickHouse(f"chdb://{tempfile.mkdtemp(prefix='sink-hop-')}", database="fleetstream")
    create_all(ch, "fleetstream")
    return ch


def insert_cost() -> None:
    sink, pool, off = ClickHouseTelemetrySink(_store()), _values(5000), 0
    for rows, reps in ((1000, 3), (1, 20), (250, 20), (1250, 12), (5000, 6)):
        batches = []
        for _ in range(reps):
            batches.append([(pool[i % len(pool)], 0, off + i) for i in range(rows)])
            off += rows
        c0, w0 = cpu(), time.perf_counter()
        for b in batches:
            sink.write_raw(b)
        dc, dw = cpu() - c0, time.perf_counter() - w0
        print(f"rows/insert {rows:5d}: CPU {1000 * dc / reps:6.1f} ms/insert, wall {1000 * dw / reps:6.1f} ms/insert, "
              f"{1e6 * dc / (reps * rows):8.1f} µs/row", flush=True)


def hop(rate: float, secs: float, base_dir: str | None) -> None:
    if base_dir:  # the other tree's sinks/base.py, loaded beside this one (its relative imports resolve here)
        spec = importlib.util.spec_from_file_location("sinks.base_other", os.path.join(base_dir, "sinks/base.py"))
        base = importlib.util.module_from_spec(spec)
        sys.modules["sinks.base_other"] = base
        spec.loader.exec_module(base)
    else:
        import sinks.base as base
    tel, pool = ClickHouseTelemetrySink(_store()), _values(20000)
    created: dict[int, float] = {}
    lat: list[float] = []
    measuring = threading.Event()
    write_raw = tel.write_raw

    def timed_write(items):
        out = write_raw(items)
        done = time.monotonic()
        for _v, _p, o in items:
            t = created.pop(o, done)
            if measuring.is_set():
                lat.append(done - t)
        return out

    tel.write_raw = timed_write
    sink = base.BatchingSink(tel, kafka="127.0.0.1:1", topic=topics.TELEMETRY.name, group_id="sink-hop",
                             batch_size=20000, batch_ms=1000)
    sink.consumer.close()
    sink.consumer = consumer = Consumer()
    stop = threading.Event()

    def feed():
        off, t0, pending, fetch_at = 0, time.monotonic(), [], 0.0
        while not stop.is_set():
            now = time.monotonic()
            for _ in range(int((now - t0) * rate) - off):
                created[off] = now
                pending.append(Msg(pool[off % len(pool)], off))
                off += 1
            if now >= fetch_at and pending:  # a fetch hands over what the broker got since the last one
                consumer.put(pending)
                pending, fetch_at = [], now + FETCH_S
            time.sleep(0.002)

    def run():
        while not stop.is_set():
            sink._one_batch()

    threading.Thread(target=feed, daemon=True).start()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    time.sleep(5)  # warm-up
    measuring.set()
    b0, r0, c0, w0 = sink.stats["batches"], sink.stats["records"], cpu(), time.monotonic()
    time.sleep(secs)
    measuring.clear()
    b1, r1, c1, w1 = sink.stats["batches"], sink.stats["records"], cpu(), time.monotonic()
    stop.set()
    worker.join(10)
    lat.sort()

    def q(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))]

    print(f"{base_dir or 'this tree'} rate {rate:g}: inserts/s {(b1 - b0) / (w1 - w0):.2f}, rows/insert "
          f"{3 * (r1 - r0) / max(1, b1 - b0):.0f}, at the sink → queryable p50/p95/p99/max "
          f"{q(.5):.0f}/{q(.95):.0f}/{q(.99):.0f}/{1000 * lat[-1]:.0f} ms, process CPU "
          f"{1e6 * (c1 - c0) / max(1, r1 - r0):.1f} µs/msg ({100 * (c1 - c0) / (w1 - w0):.0f} % of a core); "
          f"load {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rate", type=float, nargs="?", default=1000)
    ap.add_argument("seconds", type=float, nargs="?", default=30)
    ap.add_argument("--base", help="another tree (its sinks/base.py) to measure instead of this one")
    ap.add_argument("--insert-cost", action="store_true")
    a = ap.parse_args()
    bind_local_ids()
    if a.insert_cost:
        insert_cost()
    else:
        hop(a.rate, a.seconds, a.base)


if __name__ == "__main__":
    main()
