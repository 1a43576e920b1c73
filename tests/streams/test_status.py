"""Device status as an operator sees it: ONLINE on connect, OFFLINE after the device's inactivity timeout
measured in event time, and neither an out-of-order disconnect nor a late reading buffered from before
the outage flips the status (real broker, the session's streams worker)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer

from schemas import codec, device_key, topics
from tests.utils.kafka import find_records, probe_validate


def _now() -> int:
    return int(time.time() * 1000)


def test_online_offline_from_connection_and_event_time_inactivity(stack, settings):
    tenant, device = str(uuid.uuid4()), "probe-1"
    key = device_key(tenant, device)
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    entry = {"tenant_id": tenant, "device_id": device, "status": "active", "device_type": "probe", "tags": [],
             "attributes": {"offline_after_s": "3"}, "jwt_public_keys": [], "version": 1, "time": _now()}
    p.produce(topics.REGISTRY.name, codec("registry_entry").encode(entry), key)
    p.flush(10)
    # the registry view must hold the timeout before the device's first event. Not observable directly, but
    # this entry is the tenant's only one: once validate refuses an unregistered device of the tenant as
    # unknown, the view has it (adr/0051)
    probe_validate(settings.bootstrap_servers, tenant, "unregistered-1",
                   lambda topic, r: topic == topics.DEAD_LETTER.name and r["reason_code"] == "unknown_device",
                   what="the registry view to hold the tenant's entry")

    def event(kind, t):
        rec = {"tenant_id": tenant, "device_id": device, "event_type": kind, "time": t, "source": "mqtt",
               "reason": None, "details": {}}
        p.produce(topics.DEVICE_EVENTS.name, codec("device_event").encode(rec), key)

    def reading(t):
        rec = {"tenant_id": tenant, "device_id": device, "event_time": t, "receive_time": _now(), "protocol": "mqtt",
               "values": {"v": 1.0}, "device_type": None, "tags": []}
        p.produce(topics.TELEMETRY_RAW.name, codec("telemetry").encode(rec), key)

    def ours(kind):
        return lambda r: (r.get("tenant_id") == tenant and r.get("device_id") == device and r.get("source") == "streams"
                          and r["event_type"] == kind)

    t0 = _now()
    event("CONNECTED", t0)
    event("DISCONNECTED", t0 - 5000)  # arrives late, happened before the connect: ignored
    reading(t0 + 100)
    last = t0 + 200
    reading(last)
    p.flush(10)

    online = find_records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name, ours("ONLINE"), timeout=60)
    assert [r["time"] for r in online] == [t0]
    offline = find_records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name, ours("OFFLINE"), timeout=60)
    assert len(offline) == 1
    assert offline[0]["time"] == last + 3000, "OFFLINE is stamped in event time: last activity + timeout"
    assert "no activity for 3 s" in offline[0]["reason"]

    reading(last - 50)  # buffered from before the outage, delivered late: the device stays offline
    fresh = _now()
    reading(fresh)      # real new activity: online again
    p.flush(10)
    # quiet again: its second OFFLINE comes after anything these readings caused (one device's events are in
    # order), so a wrong or doubled ONLINE is on the topic by then — no waiting out a timeout for it
    offline = find_records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name, ours("OFFLINE"), count=2, timeout=60)
    assert [r["time"] for r in offline] == [last + 3000, fresh + 3000]
    online = find_records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name, ours("ONLINE"), count=3, timeout=2)
    assert [r["time"] for r in online] == [t0, fresh]
