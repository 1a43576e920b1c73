"""Helpers for rule tests: create a rule through the API, wait until the streams worker holds it, feed
readings through the real pipeline (``fleetstream.telemetry.raw`` → validate → rules), read alerts."""

from __future__ import annotations

import time

import httpx
from confluent_kafka import Producer

from schemas import codec, device_key, topics
from streams.app import web_auth_headers
from tests.utils.factories import wait_for
from tests.utils.kafka import find_records


def now_ms() -> int:
    return int(time.time() * 1000)


class RuleKit:
    def __init__(self, settings, gateway, tenant):
        self.s, self.gateway, self.tenant = settings, gateway, tenant
        self.h = {"Authorization": f"Bearer {tenant.token(gateway)}"}
        self.producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})

    def rule(self, condition: dict, *, actions: list | None = None, scope: dict | None = None, name: str = "r") -> str:
        body = {"name": name, "condition": condition, "actions": actions or [{"type": "alert", "severity": "MAJOR"}]}
        if scope:
            body["scope"] = scope
        r = self.gateway.post("/v1/rules", headers=self.h, json=body)
        assert r.status_code == 201, r.text
        rid = r.json()["rule_id"]
        self.wait_rule(rid, r.json()["version"])
        return rid

    def wait_rule(self, rule_id: str, version: int) -> None:
        url = f"http://{self.s.host}:{self.s.streams_web_port}/rules/{self.tenant.tenant_id}/"
        wait_for(lambda: httpx.get(url, headers=web_auth_headers(self.s), timeout=5).json().get(rule_id) == version,
                 timeout=30,
                 what=f"the streams worker to hold rule {rule_id} v{version}")

    def send(self, device_id: str, ts: int, values: dict, tenant_id: str | None = None) -> None:
        t = tenant_id or self.tenant.tenant_id
        rec = {"tenant_id": t, "device_id": device_id, "event_time": ts, "receive_time": now_ms(), "protocol": "mqtt",
               "values": values, "device_type": None, "tags": []}
        self.producer.produce(topics.TELEMETRY_RAW.name, codec("telemetry").encode(rec), device_key(t, device_id))
        self.producer.flush(10)

    def alerts(self, rule_id: str, count: int, timeout: float = 60) -> list[dict]:
        return find_records(self.s.bootstrap_servers, topics.ALERTS.name, lambda r: r["rule_id"] == rule_id,
                            count=count, timeout=timeout)
