"""A burst through the streams worker as the platform relies on it (adr/0057): thousands of readings
produced at once all reach fleetstream.telemetry, in order per device, and the device-activity agent
(status and rules, fed by validate's per-partition bundles) handles every one of them: each device's rule
fires on that device's last reading, and the rules handler counted at least the whole burst (the session's
streams worker, real broker)."""

from __future__ import annotations

import httpx
from confluent_kafka import Producer

from schemas import codec, device_key, topics
from streams.app import web_auth_headers
from tests.streams.rulekit import RuleKit, now_ms
from tests.utils.factories import wait_for
from tests.utils.kafka import find_records

DEVICES, PER_DEVICE = 20, 250


def test_a_burst_arrives_complete_in_order_and_device_activity_handles_every_reading(stack, factory, gateway,
                                                                                      settings):
    t = factory.tenant("burst")
    kit = RuleKit(settings, gateway, t)
    rid = kit.rule({"type": "threshold", "metric": "last", "op": ">", "value": 0.5})  # only each device's last
    stats_url = f"http://{settings.host}:{settings.streams_web_port}/stats/"
    before = httpx.get(stats_url, headers=web_auth_headers(settings), timeout=5).json()["rules"]["records"]

    tc, t0, n = codec("telemetry"), now_ms() - 60_000, DEVICES * PER_DEVICE
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random",
                  "linger.ms": 5})
    last_ts = {}
    for i in range(n):  # devices interleaved, as a fleet sends them
        dev, seq = f"b{i % DEVICES}", i // DEVICES
        ts = t0 + i
        rec = {"tenant_id": t.tenant_id, "device_id": dev, "event_time": ts, "receive_time": ts, "protocol": "mqtt",
               "values": {"seq": float(seq), "last": 1.0 if seq == PER_DEVICE - 1 else 0.0},
               "device_type": None, "tags": []}
        p.produce(topics.TELEMETRY_RAW.name, tc.encode(rec), device_key(t.tenant_id, dev))
        last_ts[dev] = ts
    p.flush(30)

    got = find_records(settings.bootstrap_servers, topics.TELEMETRY.name, lambda r: r["tenant_id"] == t.tenant_id,
                       count=n, timeout=120)
    by_device: dict[str, list[int]] = {}
    for r in got:
        by_device.setdefault(r["device_id"], []).append(int(r["values"]["seq"]))
    assert len(by_device) == DEVICES
    for dev, seqs in by_device.items():
        assert list(dict.fromkeys(seqs)) == list(range(PER_DEVICE)), f"{dev}: lost or reordered readings"

    alerts = kit.alerts(rid, count=DEVICES, timeout=120)
    assert sorted((a["device_id"], a["state"], a["time"]) for a in alerts) == sorted(
        (dev, "ACTIVE", ts) for dev, ts in last_ts.items())
    wait_for(lambda: httpx.get(stats_url, headers=web_auth_headers(settings), timeout=5).json()["rules"]["records"] - before >= n, timeout=60,
             what="the rules handler to have seen the whole burst")
