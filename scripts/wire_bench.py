"""Micro-benchmark of the hot paths that touch Avro bytes by hand (adr/0121): the connectors' telemetry
encoder, the sink's batch file for ClickHouse, validate's decode and batch, the live hub's wire peeks.

Uses only public names, so the same script measures any commit: ``PYTHONPATH=<tree> python
scripts/wire_bench.py``. Prints µs per record, the best of ``--repeat`` runs (the machine is shared: the
minimum is the least disturbed run, not an average of other processes' noise).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import timeit
from types import SimpleNamespace

N = 1000  # records per timed run: short runs, so the best of many finds a quiet moment on a shared machine


def _readings() -> list[tuple[str, str, int, int, dict]]:
    return [(f"tenant-{i % 7:02d}-0000-0000-0000-000000000000", f"device-{i % 1000:05d}", 1_795_000_000_000 + i,
             1_795_000_000_050 + i // 100, {"voltage": 229.5 + i % 10, "power_w": 81.0, "energy_kwh": 0.125 * i})
            for i in range(N)]


class _Msg:
    __slots__ = ("_v",)

    def __init__(self, v: bytes):
        self._v = v

    def value(self) -> bytes:
        return self._v


class _Registry:
    """What validate asks of the registry view, every device registered with a type and tags."""

    caught_up = threading.Event()
    caught_up.set()

    def __init__(self):
        from streams.registry import DeviceInfo
        self._info = DeviceInfo("active", "meter", ("site-a", "floor-2"))

    def tenant_refused(self, tenant):
        return None

    def lookup(self, tenant, device):
        return self._info

    def tenant_published(self, tenant):
        return True

    def type_pending(self, tenant, device_type):
        return False  # every type's entry read (adr/0182)

    def declared_metrics(self, tenant, device_type):
        return None  # free-form metrics: no declarations to check

    def sync(self, timeout):
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--cpu", action="store_true", help="time this thread's CPU (time.thread_time) instead of the "
                    "wall clock: waiting for a core on a busy machine is not counted")
    args = ap.parse_args()

    try:  # the encoder moved beside its decoder (adr/0214)
        from schemas.telemetry_wire import TelemetryEncoder
    except ImportError:
        from connectors.telemetry_encoder import TelemetryEncoder
    from gateway.live import hub
    from schemas import codec, topics
    from schemas.codec import telemetry_event_time
    from sinks.clickhouse import avro_batch
    from streams.validate import Validator

    try:  # trees since adr/0140 bind schema ids at start-up; no registry here: fixed local ids
        from schemas.codec import bind_local_ids
    except ImportError:
        pass
    else:
        bind_local_ids()

    readings = _readings()
    enc = TelemetryEncoder("mqtt")
    values = [enc.encode(*r) for r in readings]  # warms the encoder's caches, as a running connector has them
    items = [(v, i % 12, 1_000_000 + i) for i, v in enumerate(values)]
    tel = codec("telemetry")
    msgs = [_Msg(v) for v in values]
    validator = Validator(SimpleNamespace(max_clock_skew_s=10**9), _Registry())
    validator.process(msgs[:10])  # tail cache
    # one tenant of the seven exports its telemetry (adr/0146): a seventh of the readings is copied once more
    exporting_registry = _Registry()
    exporting_registry.exporting = {readings[0][0]}
    exporting = Validator(SimpleNamespace(max_clock_skew_s=10**9), exporting_registry)
    exporting.process(msgs[:10])
    topic = topics.TELEMETRY.name

    def encode():
        e = enc.encode
        for r in readings:
            e(*r)

    def container():
        avro_batch.container(items)

    def receive_time():
        rt = avro_batch.receive_time
        for v in values:
            rt(v)

    def decode():
        d = tel.decode
        for v in values:
            d(v)

    def process():
        validator.process(msgs)

    def process_exporting():
        exporting.process(msgs)

    def event_time():
        et = telemetry_event_time
        for v in values:
            et(v)

    def peek_tenant():
        wt = hub.wire_tenant
        for v in values:
            wt(v)

    def peek_device():
        wd = hub.wire_device
        for v in values:
            wd(topic, v)

    from streams import bundles
    enriched = [(k, v, {**tel.decode(v), "device_type": "meter", "tags": ["site-a", "floor-2"]})
                for k, v in zip((b"%d" % i for i in range(N)), values, strict=True)]
    bundle = bundles.pack(enriched)

    def bundle_readings():
        if hasattr(bundles, "readings"):  # since adr/0215
            bundles.readings(bundle, 0)
        else:
            [bundles.Reading(topic, 0, k, v, rec) for k, v, rec in bundles.unpack(bundle)]

    def hub_decode():
        d = hub.decode
        for i, v in enumerate(values):
            d(topic, 0, i, v)

    cases = {
        "connectors: TelemetryEncoder.encode": encode,
        "sinks: avro_batch.container (per record)": container,
        "sinks: avro_batch.receive_time": receive_time,
        "validate: codec('telemetry').decode": decode,
        "validate: Validator.process (decode+check+enrich)": process,
        "validate: Validator.process, 1 of 7 tenants exporting (adr/0146)": process_exporting,
        "streams.status: telemetry_event_time": event_time,
        "streams device-activity: bundle -> Readings": bundle_readings,
        "gateway live: wire_tenant": peek_tenant,
        "gateway live: wire_device": peek_device,
        "gateway live: decode": hub_decode,
    }
    out = {}
    for name, fn in cases.items():
        if args.only not in name:
            continue
        best = min(timeit.repeat(fn, number=1, repeat=args.repeat, timer=time.thread_time if args.cpu else
                                 timeit.default_timer))
        out[name] = best / N * 1e6
    if args.json:
        print(json.dumps(out))
    else:
        for name, us in out.items():
            print(f"{us:8.3f} µs  {name}")


if __name__ == "__main__":
    main()
