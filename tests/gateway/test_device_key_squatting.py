"""Device-key squatting (issue 19), step by step as the reporter did it: tenant B registers tenant A's device
public key for B's own device of the same name, hoping A's registration fails and A's device's readings land
under B. Each step now fails: B cannot register a key it does not hold (proof of possession), A's own
registration succeeds, and A's device's HTTP and CoAP readings land under A even if B's tenant held the
same key (a row registered before proofs were required)."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import psycopg

from connectors.base import Admission
from connectors.coap.config import CoapConfig
from connectors.coap.connector import CoapConnector
from connectors.registry import DeviceRegistry
from connectors.uplink import UplinkPublisher
from runtime.device_jwt import sign_device_jwt, sign_key_proof
from schemas import topics
from tests.gateway.helpers import bearer, key_registration, new_key_pem, public_pem
from tests.utils.factories import wait_for
from tests.utils.kafka import find_records


def _ingest(gateway, token: str, marker: str):
    return gateway.post("/v1/ingest", content=json.dumps({"ts": int(time.time() * 1000), "values": {"m": marker}}),
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def test_key_squatting_fails_at_every_step_and_the_owners_readings_stay_its_own(stack, factory, gateway, settings):
    a, b = factory.tenant("squat-a"), factory.tenant("squat-b")
    ha, hb = bearer(a.token(gateway)), bearer(b.token(gateway))
    for h in (ha, hb):
        assert gateway.post("/v1/devices", json={"device_id": "meter-1"}, headers=h).status_code == 201
    a_key, a_priv = new_key_pem()  # lives in A's device; B only ever saw its public half
    a_pub = public_pem(a_key)

    # 1. B registers A's public key without any proof: the request is incomplete
    r = gateway.post("/v1/devices/meter-1/keys", json={"public_key_pem": a_pub}, headers=hb)
    assert r.status_code == 422, r.text
    # 2. ... with a proof signed by a key B holds: not a proof for this key
    forged = sign_key_proof(new_key_pem()[1], b.tenant_id, "meter-1")
    r = gateway.post("/v1/devices/meter-1/keys", json={"public_key_pem": a_pub, "proof": forged}, headers=hb)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_key_proof", r.text
    # 3. ... replaying A's genuine proof: it names A's tenant, not B's
    a_body = key_registration(a_key, a.tenant_id, "meter-1")
    r = gateway.post("/v1/devices/meter-1/keys", json=a_body, headers=hb)
    assert r.status_code == 422 and "proof_mismatch" in r.json()["error"]["message"], r.text

    # 4. A's own registration is not blocked by anything B did
    r = gateway.post("/v1/devices/meter-1/keys", json=a_body, headers=ha)
    assert r.status_code == 201, r.text
    kid = r.json()["key_id"]

    # 5. B's tenant holds the same key anyway (a row from before proofs were required): A's device is unmoved
    with psycopg.connect(settings.owner_dsn) as conn:
        conn.execute("insert into device_keys (key_id, tenant_id, device_id, public_key_pem) values (%s, %s, %s, %s)",
                     (kid, b.tenant_id, "meter-1", a_pub.strip() + "\n"))
    with factory.admin.db.tenant_tx(b.tenant_id) as conn:  # and B's registry entry lists it, for CoAP
        published = factory.admin.enqueue_entry(conn, b.tenant_id, "meter-1")
    assert factory.admin.outbox.wait([published], timeout=30)

    # 6. A's device's HTTP readings land under A
    marker = uuid.uuid4().hex
    r = _ingest(gateway, sign_device_jwt(a_priv, a.tenant_id, "meter-1"), marker)
    assert r.status_code == 202, r.text
    rec = find_records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name, lambda x: x["values"].get("m") == marker)
    assert rec and (rec[0]["tenant_id"], rec[0]["device_id"]) == (a.tenant_id, "meter-1")
    # a token of the first contract (iss = device id, tenant from the key) is refused, never resolved globally
    now = int(time.time())
    legacy = jwt.encode({"iss": "meter-1", "sub": "meter-1", "aud": "fleetstream-ingest", "iat": now, "nbf": now,
                         "exp": now + 60, "jti": uuid.uuid4().hex}, a_key, algorithm="ES256", headers={"kid": kid})
    r = _ingest(gateway, legacy, uuid.uuid4().hex)
    assert r.status_code == 401 and "issuer_not_tenant" in r.json()["error"]["message"], r.text

    # 7. CoAP resolves keys from the registry topic the same way: A's token is A's device, whoever else has the key
    registry = DeviceRegistry(settings.bootstrap_servers, "squat-test").start()
    uplink = UplinkPublisher(settings.bootstrap_servers, "coap")
    try:
        coap = CoapConnector(uplink, CoapConfig(host="127.0.0.1", port=5683), Admission(registry, None))  # not started
        wait_for(lambda: all(registry.jwt_key(t.tenant_id, "meter-1", kid) for t in (a, b)), 60,
                 what="both registry entries listing the key")
        ident = coap.verifier.verify(sign_device_jwt(a_priv, a.tenant_id, "meter-1"))
        assert (ident.tenant_id, ident.device_id) == (a.tenant_id, "meter-1")
    finally:
        registry.stop()
        uplink.close()
