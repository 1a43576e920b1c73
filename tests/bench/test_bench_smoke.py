"""The benchmark runs and reports: a tiny run on its own stack (no timing assertions — a benchmark is not
a test), plus the pieces whose arithmetic the report depends on."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from fleetstream.bench import audit
from fleetstream.bench.config import BenchConfig
from fleetstream.bench.probes import event_time_of
from fleetstream.bench.stats import Reservoir
from fleetstream.stack.supervisor import MQTT_ROLES
from schemas import codec

# clear of the session stack's ports (tests/conftest.py) and of other sessions' offsets (multiples of 100)
PORT_OFFSET = 10_040 + int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "0"))


def test_event_time_is_read_from_the_avro_body_without_decoding_it():
    rec = {"tenant_id": str(uuid.uuid4()), "device_id": "d" * 300, "event_time": 1_795_000_000_123,
           "receive_time": 1, "protocol": "mqtt", "values": {"a": 1.0}, "device_type": None, "tags": []}
    assert event_time_of(codec("telemetry").encode(rec)) == 1_795_000_000_123


def test_percentiles_and_max():
    r = Reservoir(cap=50)
    for v in range(1, 1001):
        r.add(float(v))
    s = r.summary()
    assert s["count"] == 1000 and s["max"] == 1000.0
    assert 0 < s["p50"] <= s["p95"] <= s["p99"] <= 1000


def test_compare_counts_lost_duplicated_and_unacknowledged_points():
    sent = {"a": [10, 10, 0, 0], "b": [5, 4, 0, 0], "c": [2, 2, 0, 0]}
    stored = {"per_device": {"a": [31, 30], "b": [15, 15]}, "physical_rows": 50}
    out = audit.compare(sent, stored, 3)
    assert out["points_expected"] == (10 + 4 + 2) * 3
    assert out["lost_points"] == 6 and out["devices_missing"] == 1  # all of c's points
    assert out["duplicated_in_query"] == 1
    assert out["unexpected_points"] == 0  # b's unacknowledged message was stored: allowed (QoS1 at-least-once)
    assert out["physical_duplicate_rows"] == 50 - 45


@pytest.mark.integration
def test_tiny_benchmark_runs_and_writes_a_complete_report(tmp_path):
    from fleetstream.bench import report
    from fleetstream.bench.runner import Run

    # each phase as short as the report's sections allow (samplers take one sample a second): 1 s idle, 1 s
    # warm-up, a 4 s step of ~160 messages; the 4 devices in 3 tenants (2, 1, 1), the probes' 2 in the first
    cfg = BenchConfig(rate=40, duration_s=4, devices=4, warmup_s=1, idle_s=1, baseline_records=2000, port_offset=PORT_OFFSET,
                      results_dir=tmp_path, probe_devices=2, label="smoke", drain_timeout_s=60,
                      roles=MQTT_ROLES, tenants=3)
    t0 = time.monotonic()
    result = Run(cfg).execute()
    path = report.write(result, tmp_path)

    on_disk = json.loads(path.read_text())
    assert path.with_suffix(".md").read_text().startswith("# fleetstream benchmark")
    assert on_disk["machine"]["cores"] == os.cpu_count() and on_disk["git_rev"]
    assert len(on_disk["load_avg_start"]) == 3
    (step,) = on_disk["steps"]
    assert step["sent"] > 0 and step["acked"] > 0 and step["accepted_msg_s"] > 0
    assert step["latency_ms"]["publish_to_kafka_observed"]["count"] > 0
    assert step["latency_ms"]["publish_to_kafka_observed"]["p50"] >= 0
    assert step["latency_ms"]["publish_to_websocket"]["count"] > 0, on_disk["websocket_probe"]
    assert {"kafka", "gateway", "mosquitto", "load-generator"} <= set(step["resources"])
    assert step["cpu_us_per_msg"]["connector-mqtt"] >= 0 and on_disk["idle_cpu_pct"]
    assert on_disk["kafka_baseline"]["consumed"] == 2000
    assert on_disk["sessions"]["connected"] == 4
    assert on_disk["provisioning"]["tenants"] == 3 and on_disk["provisioning"]["tenants_seconds"] >= 0
    assert on_disk["lag_series"], "consumer lag was sampled"
    d = on_disk["delivery"]
    assert d["messages_acked"] > 0 and d["points_expected"] == 3 * d["messages_acked"]
    assert d["lost_points"] == 0 and d["duplicated_in_query"] == 0, d
    assert d["devices_missing"] == 0, d  # the audit counted every tenant's devices
    assert time.monotonic() - t0 < 600  # a hung run fails here rather than at the suite timeout
