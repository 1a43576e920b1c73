"""Suspension and revocation take effect on tokens already issued (issue 19, adr/0107): once a platform
operator suspends a tenant, its existing tokens are refused with a JSON 403 by every gateway replica, its
devices' HTTP ingest is refused, and readings that reach Kafka from any connector are dead-lettered by the
validate agent; resuming restores all of it. A revoked API client's token is refused with a JSON 401
before it expires. The waits are conditions with generous timeouts; the measured latency is in
bench/results (scripts/revocation_latency.py)."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest
from confluent_kafka import Producer

from runtime.device_jwt import sign_device_jwt
from runtime.settings import Settings
from schemas import codec, device_key, topics
from streams.registry import DeviceInfo
from tests.gateway.helpers import bearer, key_registration, new_key_pem, platform_token
from tests.gateway.replica import second_gateway
from tests.utils.factories import wait_for
from tests.utils.kafka import find_records, records_to_end


@pytest.fixture(scope="module")
def replica(stack, settings):
    with second_gateway(settings) as c:
        yield c


def _status(client, token: str) -> tuple[int, str | None]:
    r = client.get("/v1/devices", headers=bearer(token))
    code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
    return r.status_code, code


def _set_tenant(gateway, settings, tenant_id: str, status: str) -> None:
    r = gateway.patch(f"/v1/admin/tenants/{tenant_id}", json={"status": status}, headers=bearer(platform_token(settings)))
    assert r.status_code == 200 and r.json()["status"] == status, r.text


def _raw_reading(tenant_id: str, device_id: str, protocol: str, marker: str) -> bytes:
    now = int(time.time() * 1000)
    return codec("telemetry").encode({"tenant_id": tenant_id, "device_id": device_id, "event_time": now,
                                      "receive_time": now, "protocol": protocol, "values": {"marker": marker},
                                      "device_type": None, "tags": []})


def test_a_suspended_tenants_tokens_and_devices_are_refused_on_every_replica_until_resumed(
        stack, factory, gateway, replica, settings):
    t = factory.tenant("suspend")
    token = t.token(gateway)
    dev = factory.device(t)
    key, priv = new_key_pem()
    h = bearer(token)
    assert gateway.post(f"/v1/devices/{dev.device_id}/keys", json=key_registration(key, t.tenant_id, dev.device_id),
                        headers=h).status_code == 201
    for client in (gateway, replica):
        assert _status(client, token) == (200, None)

    _set_tenant(gateway, settings, t.tenant_id, "suspended")
    for client in (gateway, replica):
        wait_for(lambda c=client: _status(c, token) == (403, "tenant_suspended"), 30, what="old token refused")
    r = gateway.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": t.client_id,
                                              "client_secret": t.client_secret})
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"
    # live streams check the same token at the handshake
    with gateway.stream("GET", f"/v1/devices/{dev.device_id}/events", params={"access_token": token}) as r:
        assert r.status_code == 401
    # HTTP ingest of its devices: refused at the gateway
    r = gateway.post("/v1/ingest", content=b'{"values": {"x": 1}}', headers={
        "Authorization": f"Bearer {sign_device_jwt(priv, t.tenant_id, dev.device_id)}",
        "Content-Type": "application/json"})
    assert r.status_code == 403, r.text
    # readings that reach Kafka through any connector (MQTT, CoAP) are refused by the validate agent once its
    # view of fleetstream.tenants has the suspension (a consumer, moments behind the API): wait for that, then
    # every reading of the tenant is refused
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "partitioner": "murmur2_random"})

    def send(proto: str) -> str:
        marker = uuid.uuid4().hex
        p.produce(topics.TELEMETRY_RAW.name, _raw_reading(t.tenant_id, dev.device_id, proto, marker),
                  device_key(t.tenant_id, dev.device_id))
        p.flush(10)
        return marker

    def dead_lettered(markers: set[str], timeout: float) -> list[dict]:
        return find_records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                            lambda d: d.get("tenant_id") == t.tenant_id and d["reason_code"] == "tenant_suspended"
                            and codec("telemetry").decode(d["raw"])["values"]["marker"] in markers,
                            count=len(markers), timeout=timeout)

    wait_for(lambda: dead_lettered({send("mqtt")}, 10), 120, interval=0, what="the validate agent refusing the tenant")
    refused = {send(proto) for proto in ("mqtt", "coap")}
    dead = dead_lettered(refused, 120)
    assert len(dead) == 2 and all(d["source"] == "streams.validate" for d in dead)

    _set_tenant(gateway, settings, t.tenant_id, "active")
    for client in (gateway, replica):
        wait_for(lambda c=client: _status(c, token) == (200, None), 30, what="old token accepted again")
    marker = uuid.uuid4().hex
    r = gateway.post("/v1/ingest", content=json.dumps({"values": {"marker": marker}}), headers={
        "Authorization": f"Bearer {sign_device_jwt(priv, t.tenant_id, dev.device_id)}",
        "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    ok = find_records(settings.bootstrap_servers, topics.TELEMETRY.name,
                      lambda x: x["values"].get("marker") == marker, timeout=60)
    assert ok and ok[0]["tenant_id"] == t.tenant_id
    key = device_key(t.tenant_id, dev.device_id)  # the refused readings went before it on its partition
    assert [x["values"] for x in records_to_end(settings.bootstrap_servers, topics.TELEMETRY.name, key)
            if x["values"].get("marker") in refused] == []


def test_a_revoked_clients_token_is_refused_on_every_replica_before_it_expires(stack, factory, gateway, replica):
    t = factory.tenant("revoke")
    admin_h = bearer(t.token(gateway))
    r = gateway.post("/v1/clients", json={"name": "integration", "scopes": ["devices:read"]}, headers=admin_h)
    assert r.status_code == 201, r.text
    client_id, secret = r.json()["client_id"], r.json()["client_secret"]
    tok = gateway.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                "client_secret": secret}).json()["access_token"]
    for client in (gateway, replica):
        assert _status(client, tok) == (200, None)

    assert gateway.post(f"/v1/clients/{client_id}/revoke", headers=admin_h).status_code == 200
    for client in (gateway, replica):
        wait_for(lambda c=client: _status(c, tok) == (401, "token_revoked"), 30, what="revoked token refused")
    assert _status(gateway, t.token(gateway)) == (200, None)  # the tenant's other clients are unaffected
    r = gateway.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                              "client_secret": secret})
    assert r.status_code == 401


def test_without_its_listener_a_gateway_asks_postgres_and_still_refuses(stack, factory, gateway, settings):
    """The fallback path: an AuthState whose listener is not running answers from Postgres per request."""
    from gateway.auth.revocation import AuthState, TokenRevoked
    from gateway.auth.tokens import Principal

    t = factory.tenant("fallback")
    state = AuthState(settings.app_dsn, factory.admin.db.pool)  # never started: not live
    p = Principal(tenant_id=t.tenant_id, client_id=t.client_id, scopes=frozenset())
    state.check(p)
    _set_tenant(gateway, settings, t.tenant_id, "suspended")

    def refusal():
        try:
            state.check(p)
        except TokenRevoked as exc:
            return exc
        return None

    e = wait_for(refusal, 10, interval=0.05, what="the fallback to see the suspension")
    assert (e.status, e.code) == (403, "tenant_suspended") and state.stats["fallback_queries"] >= 2
    _set_tenant(gateway, settings, t.tenant_id, "active")


class _Views:
    """A registry view whose tenant view is behind: the tenant reads as suspended until ``sync``."""

    caught_up = SimpleNamespace(is_set=lambda: True)

    def __init__(self, behind: dict[str, str], now: dict[str, str]):
        self.refused, self._now, self.syncs = dict(behind), now, 0

    def lookup(self, tenant, device):
        return DeviceInfo("active", None, ())

    def tenant_published(self, tenant):
        return True

    def type_pending(self, tenant, device_type):
        return False

    def declared_metrics(self, tenant, device_type):
        return None  # no typed metrics (adr/0182)

    def tenant_refused(self, tenant):
        return self.refused.get(tenant)

    def sync(self, timeout):
        self.syncs += 1
        self.refused = dict(self._now)
        return True


class _Msg:
    def __init__(self, value):
        self._v = value

    def value(self):
        return self._v


def test_the_validate_agent_rechecks_a_tenant_refusal_after_catching_up():
    """A resumed tenant's first reading can overtake its tenant entry (two consumers): the agent catches its
    views up before refusing, so the reading passes; a tenant still suspended after the catch-up is refused."""
    from streams.validate import Validator

    now = int(time.time() * 1000)
    rec = {"tenant_id": "t-resumed", "device_id": "d", "event_time": now, "receive_time": now, "protocol": "mqtt",
           "values": {"v": 1.0}, "device_type": None, "tags": []}
    views = _Views({"t-resumed": "suspended", "t-still": "suspended"}, {"t-still": "suspended"})
    out = Validator(Settings(), views).process([_Msg(codec("telemetry").encode(r)) for r in (
        rec, {**rec, "tenant_id": "t-still"})])
    assert [o[0] for o in out] == [topics.TELEMETRY.name, topics.DEAD_LETTER.name] and views.syncs == 1
    assert codec("dead_letter").decode(out[1][2])["reason_code"] == "tenant_suspended"
