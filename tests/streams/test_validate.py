"""Registry enforcement as the platform operator relies on it: telemetry of an active device is enriched
with its type and tags; a suspended or decommissioned device's data and an unregistered device's data are
dead-lettered with a reason (tested on the real broker and the session's streams worker)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer

from schemas import codec, device_key, topics
from tests.utils.kafka import find_records, probe_validate


def _entry(tenant, device, status, device_type=None, tags=()):
    return {"tenant_id": tenant, "device_id": device, "status": status, "device_type": device_type,
            "tags": list(tags), "attributes": {}, "jwt_public_keys": [], "version": 1, "time": int(time.time() * 1000)}


def _reading(tenant, device, value):
    now = int(time.time() * 1000)
    return {"tenant_id": tenant, "device_id": device, "event_time": now, "receive_time": now, "protocol": "http",
            "values": {"temperature": value}, "device_type": None, "tags": []}


def test_registry_decides_which_readings_pass_and_enriches_them(stack, settings):
    tenant = str(uuid.uuid4())
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})
    for dev, status, dtype, tags in [("active-1", "active", "boiler", ["site-a", "floor-2"]),
                                     ("susp-1", "suspended", "boiler", []), ("gone-1", "decommissioned", None, [])]:
        p.produce(topics.REGISTRY.name, codec("registry_entry").encode(_entry(tenant, dev, status, dtype, tags)),
                  device_key(tenant, dev))
    p.flush(10)
    # the worker's registry view follows the compacted topic: once it enriches active-1, it holds the tenant,
    # and validate catches the view up before refusing any of the tenant's devices as unknown (adr/0051)
    probe_validate(settings.bootstrap_servers, tenant, "active-1",
                   lambda topic, r: topic == topics.TELEMETRY.name and r["device_type"] == "boiler",
                   what="the registry view to enrich active-1")
    for dev, v in [("active-1", 1.0), ("susp-1", 2.0), ("gone-1", 3.0), ("stranger-1", 4.0)]:
        p.produce(topics.TELEMETRY_RAW.name, codec("telemetry").encode(_reading(tenant, dev, v)), device_key(tenant, dev))
    p.flush(10)

    ok = find_records(settings.bootstrap_servers, topics.TELEMETRY.name,
                      lambda r: r["tenant_id"] == tenant and "probe" not in r["values"], count=1, timeout=60)
    assert [(r["device_id"], r["device_type"], r["tags"]) for r in ok] == [("active-1", "boiler", ["site-a", "floor-2"])]
    dead = find_records(settings.bootstrap_servers, topics.DEAD_LETTER.name, lambda r: r.get("tenant_id") == tenant,
                        count=3, timeout=60)
    by_device = {d["device_id"]: d for d in dead}
    assert by_device["susp-1"]["reason_code"] == "device_suspended"
    assert by_device["gone-1"]["reason_code"] == "device_decommissioned"
    assert by_device["stranger-1"]["reason_code"] == "unknown_device"
    assert all(d["source"] == "streams.validate" and d["raw"] for d in dead)
    # nothing of the refused devices reached the validated topic
    more = find_records(settings.bootstrap_servers, topics.TELEMETRY.name,
                        lambda r: r["tenant_id"] == tenant and r["device_id"] != "active-1", count=1, timeout=3)
    assert more == []
