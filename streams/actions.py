"""What a rule does when it fires or clears (adr/0056): alert records, webhook calls, commands, and
republishing to the tenant's export topic. Everything is keyed by ids derived from the activation
(rule, device, event time of the first matching reading), so re-processing after a crash produces the
same alert id and the same command id, never a second alert or a second command."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
import uuid

import aiohttp
import aiohttp.abc
import aiohttp.resolver
import faust

from schemas import codec, device_key, topics
from schemas.webhook_targets import REFUSED_HINT, WebhookPolicy

from .rules_view import Rule

log = logging.getLogger(__name__)

NS = uuid.UUID("0b7f9a52-3c1e-4f8e-a3d4-5c6b7a8e9f01")
WEBHOOK_BACKOFF_S = 0.5


def activation_id(rule: Rule, device_id: str, fired_at: int) -> str:
    return str(uuid.uuid5(NS, f"{rule.tenant_id}:{rule.rule_id}:{device_id}:{fired_at}"))


def sign(secret: str, body: bytes, ts: str) -> str:
    """X-Fleetstream-Signature: ``t=<ts>,v1=<hex HMAC-SHA256(secret, ts + "." + body)>``."""
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def export_topic(tenant_id: str) -> str:
    return topics.tenant_export_topic(tenant_id)


class TargetRefused(OSError):
    """A webhook target the platform must not call (adr/0110); aiohttp reports it as a connection error."""


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolves as aiohttp would, then refuses the connection if the name points at an address the
    policy refuses. The addresses checked are the ones connected to, so a name re-pointed at a private
    address after its rule was saved (DNS rebinding) is caught here."""

    def __init__(self, policy: WebhookPolicy):
        self.policy = policy
        self.inner = aiohttp.resolver.DefaultResolver()

    async def resolve(self, host, port=0, family=socket.AF_INET):
        infos = await self.inner.resolve(host, port, family)
        if problem := self.policy.resolved_problem(host, [i["host"] for i in infos]):
            raise TargetRefused(f"{problem}; {REFUSED_HINT}")
        return infos

    async def close(self) -> None:
        await self.inner.close()


class ActionRunner:
    def __init__(self, app: faust.App, webhooks: WebhookPolicy | None = None,
                 topic_config: dict[str, str] | None = None):
        # a tenant's export topic is created here on first use: min.insync.replicas from settings (adr/0131)
        self.topic_config = dict(topic_config or {})
        self.app = app
        self.webhooks = webhooks or WebhookPolicy()
        self.alerts = app.topic(topics.ALERTS.name, key_type=bytes, value_type=bytes)
        self.requests = app.topic(topics.COMMAND_REQUESTS.name, key_type=bytes, value_type=bytes)
        self.outcomes = app.topic(topics.ACTION_OUTCOMES.name, key_type=bytes, value_type=bytes)
        self._exports: dict[str, faust.TopicT] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()
        self.stats = {"alerts": 0, "webhooks_ok": 0, "webhooks_failed": 0, "commands": 0, "republished": 0}

    async def run(self, rule: Rule, device_id: str, fired: bool, aid: str, ts: int, values: dict,
                  raw: bytes | None) -> None:
        for action in rule.actions:
            kind = action["type"]
            if kind == "alert":
                if fired or action.get("auto_clear", True):
                    await self._alert(rule, device_id, action, aid, "ACTIVE" if fired else "CLEARED", ts, values)
            elif kind == "webhook" and (fired or action.get("on_clear")):
                body = json.dumps({"event": "fired" if fired else "cleared", "tenant_id": rule.tenant_id,
                                   "rule_id": rule.rule_id, "rule_version": rule.version, "rule_name": rule.name,
                                   "device_id": device_id, "alert_id": aid, "time": ts, "values": values}).encode()
                self._spawn(self._webhook(rule, device_id, aid, action, body))
            elif kind == "command" and fired:
                await self._command(rule, device_id, aid, action)
            elif kind == "republish" and raw is not None and (fired or action.get("on_clear")):
                await self._republish(rule, device_id, raw)

    async def _alert(self, rule, device_id, action, aid, state, ts, values) -> None:
        rec = {"tenant_id": rule.tenant_id, "alert_id": aid, "rule_id": rule.rule_id, "device_id": device_id,
               "severity": action.get("severity", "WARNING"), "state": state, "time": ts,
               "message": action.get("message") or f"{rule.name}: {'condition met' if state == 'ACTIVE' else 'cleared'}",
               "details_json": json.dumps({"values": values, "rule_version": rule.version})}
        await self.alerts.send(key=device_key(rule.tenant_id, device_id), value=codec("alert").encode(rec))
        self.stats["alerts"] += 1

    async def _command(self, rule, device_id, aid, action) -> None:
        now = time.time_ns() // 1_000_000
        rec = {"tenant_id": rule.tenant_id, "device_id": device_id, "command_id": str(uuid.uuid5(NS, aid + ":cmd")),
               "name": action["name"], "params_json": json.dumps(action.get("params", {})), "created_at": now,
               "timeout_ms": int(action.get("timeout_s", 30) * 1000), "expires_at": None, "attempt": 0,
               "idempotency_key": f"rule:{aid}", "protocol": None, "max_attempts": 4}
        await self.requests.send(key=device_key(rule.tenant_id, device_id), value=codec("command").encode(rec))
        self.stats["commands"] += 1

    async def _republish(self, rule, device_id, raw) -> None:
        name = export_topic(rule.tenant_id)
        topic = self._exports.get(name)
        if topic is None:
            topic = self._exports[name] = self.app.topic(name, key_type=bytes, value_type=bytes,
                                                         partitions=self.app.conf.topic_partitions,
                                                         config={**topics.TENANT_EXPORT.config(),
                                                                 **self.topic_config})
            await topic.maybe_declare()
        await topic.send(key=device_key(rule.tenant_id, device_id), value=raw,
                         headers={"fs-rule-id": rule.rule_id.encode()})
        self.stats["republished"] += 1

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _webhook(self, rule, device_id, aid, action, body: bytes) -> None:
        if self._session is None:
            # no proxies from the environment, and every name resolved through the policy
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.webhooks))
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        attempts, status, error = 0, None, None
        max_attempts = action.get("max_attempts", 3)
        # a literal address never reaches the resolver: judged here (names are judged when connecting)
        if problem := self.webhooks.url_problem(action["url"]):
            error, max_attempts = f"refused: {problem}; {REFUSED_HINT}", 0
        for attempt in range(1, max_attempts + 1):
            attempts = attempt
            ts = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Fleetstream-Signature": sign(action["secret"], body, ts),
                       "X-Fleetstream-Rule": rule.rule_id, "X-Fleetstream-Delivery": f"{aid}:{attempt}"}
            try:
                # redirects are not followed: a receiver must not bounce the platform to another address
                async with self._session.post(action["url"], data=body, headers=headers, allow_redirects=False,
                                              timeout=aiohttp.ClientTimeout(total=action.get("timeout_s", 5))) as r:
                    status, error = r.status, None if r.status < 300 else f"HTTP {r.status}"
                    if 300 <= r.status < 400:
                        error += " (redirects are not followed)"
                    if r.status < 300:
                        break
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, TargetRefused):
                    status, error = None, f"refused: {exc.os_error}"[:300]
                    break  # a retry would be refused again
                status, error = None, f"{type(exc).__name__}: {exc}"[:300]
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"[:300]
            if attempt < max_attempts:
                await asyncio.sleep(WEBHOOK_BACKOFF_S * 2 ** (attempt - 1))
        ok = error is None
        self.stats["webhooks_ok" if ok else "webhooks_failed"] += 1
        rec = {"tenant_id": rule.tenant_id, "rule_id": rule.rule_id, "device_id": device_id, "alert_id": aid,
               "action": "webhook", "target": action["url"], "ok": ok, "attempts": attempts, "status_code": status,
               "error": error, "time": time.time_ns() // 1_000_000}
        await self.outcomes.send(key=device_key(rule.tenant_id, device_id), value=codec("action_outcome").encode(rec))
