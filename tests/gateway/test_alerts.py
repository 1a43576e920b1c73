"""What a firing rule does, as a tenant sees it: an alert to list, acknowledge and clear; a webhook call
signed with the rule's secret and retried when the receiver fails (a local HTTP server here), with the
outcome recorded; a command sent to the device; the reading republished to the tenant's export topic."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from schemas import topics
from tests.streams.rulekit import RuleKit, now_ms
from tests.utils.factories import wait_for
from tests.utils.kafka import find_records

HOOK_PORT = 28700 + int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "0"))
HOOK_HOST = "127.0.0.2"  # the test stack's webhook allow-list names it (tests/conftest.py, adr/0110)
SECRET = "0123456789abcdef-hook-secret"


@pytest.fixture
def receiver():
    """A webhook receiver that fails the first call of each delivery with 503, then accepts."""
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls.append({"headers": dict(self.headers), "body": body})
            self.send_response(503 if len(calls) == 1 else 200)
            self.end_headers()

        def log_message(self, *_):
            pass

    try:
        server = ThreadingHTTPServer((HOOK_HOST, HOOK_PORT), Handler)
    except OSError:  # the offset port is taken on this shared machine: any free port will do
        server = ThreadingHTTPServer((HOOK_HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    calls_port = server.server_address[1]
    yield calls, calls_port
    server.shutdown()
    server.server_close()


def test_fired_rule_alerts_calls_a_signed_webhook_sends_a_command_and_republishes(stack, factory, gateway, settings,
                                                                                   receiver):
    receiver, port = receiver
    t = factory.tenant("actions")
    kit = RuleKit(settings, gateway, t)
    dev = factory.device(t).device_id
    rid = kit.rule({"type": "threshold", "metric": "temperature", "op": ">", "value": 80}, actions=[
        {"type": "alert", "severity": "CRITICAL", "message": "boiler overheating", "auto_clear": False},
        {"type": "webhook", "url": f"http://{HOOK_HOST}:{port}/hook", "secret": SECRET, "timeout_s": 5,
         "max_attempts": 3},
        {"type": "command", "name": "shutdown", "params": {"reason": "overheat"}},
        {"type": "republish"}])
    t0 = now_ms() - 30_000
    kit.send(dev, t0, {"temperature": 95.0})
    kit.send(dev, t0 + 1000, {"temperature": 20.0})  # condition false again: auto_clear is off, the alert stays

    # the webhook: first call refused, the retry accepted; both signed over the same body
    wait_for(lambda: len(receiver) >= 2, timeout=60, what="the webhook and its retry")
    first, second = receiver[0], receiver[1]
    assert first["body"] == second["body"]
    payload = json.loads(second["body"])
    assert payload["event"] == "fired" and payload["rule_id"] == rid and payload["device_id"] == dev
    assert payload["tenant_id"] == t.tenant_id and payload["values"] == {"temperature": 95.0}
    sig = dict(p.split("=", 1) for p in second["headers"]["X-Fleetstream-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), sig["t"].encode() + b"." + second["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sig["v1"], expected)
    outcome = find_records(settings.bootstrap_servers, topics.ACTION_OUTCOMES.name, lambda r: r["rule_id"] == rid,
                           timeout=30)
    assert [(o["ok"], o["attempts"], o["status_code"]) for o in outcome] == [(True, 2, 200)]

    # the command went to the device's command agent
    cmds = wait_for(lambda: gateway.get(f"/v1/devices/{dev}/commands", headers=kit.h).json()["data"], timeout=90,
                    what="the rule's command")
    assert [(c["name"], c["params"]) for c in cmds] == [("shutdown", {"reason": "overheat"})]

    # the reading, republished to the tenant's own export topic
    exported = find_records(settings.bootstrap_servers, f"fleetstream.export.{t.tenant_id}",
                            lambda r: r["device_id"] == dev, timeout=30)
    assert exported and exported[0]["values"] == {"temperature": 95.0}

    # the alert: listed, acknowledged, cleared by hand (auto-clear was off)
    alerts = wait_for(lambda: gateway.get("/v1/alerts", headers=kit.h, params={"rule_id": rid}).json()["data"],
                      timeout=30, what="the alert in the API")
    assert [(a["state"], a["severity"], a["message"]) for a in alerts] == [("ACTIVE", "CRITICAL", "boiler overheating")]
    aid = alerts[0]["alert_id"]
    other = factory.tenant("alertother")
    oh = {"Authorization": f"Bearer {other.token(gateway)}"}
    assert gateway.get("/v1/alerts", headers=oh).json()["count"] == 0
    assert gateway.post(f"/v1/alerts/{aid}/acknowledge", headers=oh).status_code == 404
    r = gateway.post(f"/v1/alerts/{aid}/acknowledge", headers=kit.h)
    assert r.status_code == 200 and r.json()["state"] == "ACKNOWLEDGED"
    r = gateway.post(f"/v1/alerts/{aid}/acknowledge", headers=kit.h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "alert_state"
    assert gateway.post(f"/v1/alerts/{aid}/clear", headers=kit.h).json()["state"] == "CLEARED"
    assert gateway.get("/v1/alerts", headers=kit.h, params={"state": "CLEARED"}).json()["count"] == 1
    assert gateway.get("/v1/alerts", headers=kit.h, params={"state": "ACTIVE"}).json()["count"] == 0
    on_kafka = find_records(settings.bootstrap_servers, topics.ALERTS.name, lambda r: r["alert_id"] == aid, count=3)
    assert [a["state"] for a in on_kafka] == ["ACTIVE", "ACKNOWLEDGED", "CLEARED"]
