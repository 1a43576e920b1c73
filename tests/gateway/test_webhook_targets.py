"""Rule webhooks cannot be pointed into the platform's own network (SSRF, adr/0110): a rule whose webhook
targets a loopback, private, link-local (cloud metadata), unique-local, multicast or unspecified address,
or a name resolving to one, is refused with 422 and a reason; the test stack's allow-list (127.0.0.2)
is accepted. At send time the rules agent checks again in the resolver it connects with: a rule that
reached the agent with a name resolving to 127.0.0.1 (saved before the name was re-pointed) is refused
with the outcome recorded, and a redirect is not followed."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Producer

from schemas import codec, topics
from schemas.webhook_targets import WebhookPolicy
from tests.streams.rulekit import RuleKit, now_ms
from tests.utils.factories import wait_for
from tests.utils.kafka import find_records

SECRET = "0123456789abcdef-hook-secret"
HOT = {"type": "threshold", "metric": "temperature", "op": ">", "value": 80}


def _hook(url: str) -> dict:
    return {"type": "webhook", "url": url, "secret": SECRET, "max_attempts": 2, "timeout_s": 5}


class _Receiver:
    """An HTTP server that records calls; ``location`` makes it answer 302 to there."""

    def __init__(self, host: str, location: str | None = None):
        self.calls: list[str] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.append(self.path)
                self.send_response(302 if location else 200)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[_Receiver] = []

    def make(host: str, location: str | None = None) -> _Receiver:
        made.append(_Receiver(host, location))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
    ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("http://192.168.1.10/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[::1]:8080/hook", "::1 is a loopback address"),
    ("http://[fd12:3456::1]/hook", "private"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://224.0.0.251/hook", "multicast"),
    ("http://0.0.0.0:18080/hook", "unspecified"),
    ("http://localhost:18080/hook", "localhost resolves to"),
    ("http://2130706433/hook", "127.0.0.1"),  # 127.0.0.1 written as one number
])
def test_a_rule_with_an_internal_webhook_target_is_refused(stack, factory, gateway, settings, url, reason):
    kit = RuleKit(settings, gateway, factory.tenant("ssrf"))
    body = {"name": "internal", "condition": HOT, "actions": [_hook(url)]}
    r = gateway.post("/v1/rules", headers=kit.h, json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "webhook_target_refused" and reason in err["message"] and "actions.0.url" in err["message"]
    assert gateway.get("/v1/rules", headers=kit.h).json()["count"] == 0
    # the same on replacing a saved rule's document
    ok = gateway.post("/v1/rules", headers=kit.h, json={**body, "actions": [{"type": "alert"}]})
    assert ok.status_code == 201
    r = gateway.put(f"/v1/rules/{ok.json()['rule_id']}", headers=kit.h, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "webhook_target_refused"


def test_an_allow_listed_private_target_is_accepted(stack, factory, gateway, settings):
    assert "127.0.0.2/32" in settings.webhook_allow
    kit = RuleKit(settings, gateway, factory.tenant("ssrfok"))
    r = gateway.post("/v1/rules", headers=kit.h,
                     json={"name": "ok", "condition": HOT, "actions": [_hook("http://127.0.0.2:9/hook")]})
    assert r.status_code == 201, r.text


def _publish_rule(settings, tenant_id: str, document: dict) -> str:
    """Puts a rule on the rules topic as the gateway would have saved it before its name was re-pointed."""
    rid = str(uuid.uuid4())
    rec = {"tenant_id": tenant_id, "rule_id": rid, "version": 1, "enabled": True, "document_json": json.dumps(document)}
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    p.produce(topics.RULES.name, codec("rule_entry").encode(rec), f"{tenant_id}:{rid}".encode())
    assert p.flush(10) == 0
    return rid


def test_a_name_resolving_to_loopback_is_refused_at_send_time_and_a_redirect_not_followed(
        stack, factory, gateway, settings, receivers):
    inside = receivers("127.0.0.1")  # what the name points at: must never be called
    bouncer = receivers("127.0.0.2", location=f"http://127.0.0.1:{inside.port}/bounced")  # allowed, redirects
    kit = RuleKit(settings, gateway, factory.tenant("rebind"))
    dev = factory.device(kit.tenant).device_id
    doc = {"name": "rebound", "condition": HOT, "scope": {"devices": [dev]},
           "actions": [_hook(f"http://localhost:{inside.port}/hook")]}
    rebound = _publish_rule(settings, kit.tenant.tenant_id, doc)
    kit.wait_rule(rebound, 1)
    redirected = kit.rule(HOT, scope={"devices": [dev]}, actions=[_hook(f"http://127.0.0.2:{bouncer.port}/hook")])

    kit.send(dev, now_ms() - 10_000, {"temperature": 95.0})
    [refused] = find_records(settings.bootstrap_servers, topics.ACTION_OUTCOMES.name,
                             lambda r: r["rule_id"] == rebound, timeout=60)
    assert refused["ok"] is False and refused["status_code"] is None and refused["attempts"] == 1
    assert refused["error"].startswith("refused: localhost resolves to") and "loopback" in refused["error"]
    [bounced] = find_records(settings.bootstrap_servers, topics.ACTION_OUTCOMES.name,
                             lambda r: r["rule_id"] == redirected, timeout=60)
    assert bounced["ok"] is False and bounced["status_code"] == 302
    assert "redirects are not followed" in bounced["error"]
    wait_for(lambda: len(bouncer.calls) == 2, timeout=30, what="both attempts at the allowed receiver")
    assert inside.calls == [], "the platform called a loopback address"


@pytest.mark.parametrize("address, refused", [
    ("8.8.8.8", False), ("2606:4700:4700::1111", False),
    ("127.0.0.1", True), ("10.0.0.1", True), ("172.16.5.4", True), ("192.168.0.1", True), ("100.64.0.1", True),
    ("169.254.169.254", True), ("fe80::1", True), ("fc00::1", True), ("fd00:ec2::254", True), ("::1", True),
    ("::", True), ("0.0.0.0", True), ("224.0.0.1", True), ("ff02::1", True), ("::ffff:169.254.169.254", True),
    ("2002:7f00:0001::1", True),  # 6to4 wrapping 127.0.0.1
    ("255.255.255.255", True), ("240.0.0.1", True),
])
def test_policy_refuses_every_non_public_address(address, refused):
    assert (WebhookPolicy().problem(address) is not None) == refused


def test_policy_allow_list_takes_cidrs_and_host_names():
    p = WebhookPolicy.parse(" 10.20.0.0/16, hooks.internal. ,127.0.0.2")
    assert p.problem("10.20.3.4") is None and p.problem("10.21.0.1") is not None
    assert p.problem("127.0.0.2") is None and p.problem("127.0.0.1") is not None
    assert p.url_problem("http://HOOKS.internal:8080/x") is None
    assert p.resolved_problem("hooks.internal", ["127.0.0.1"]) is None
    assert "loopback" in p.resolved_problem("other.internal", ["93.184.216.34", "127.0.0.1"])
    assert p.url_problem("file:///etc/passwd") is not None and p.url_problem("gopher://10.20.0.1/") is not None
