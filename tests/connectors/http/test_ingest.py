"""A device without MQTT sends readings over HTTP: POST /v1/ingest with a JWT it signed itself. It gets
202 only once Kafka has the data, keeps the good readings of a mixed batch, cannot write as another
device, and bad input is dead-lettered with a reason; a certificate forwarded by an ingress is believed
only from a trusted proxy and only if its tenant's CA issued it."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.errors import DeviceDisabledError, UnauthenticatedError
from connectors.http import DeviceAuthenticator
from runtime.device_jwt import DeviceJwtVerifier, sign_device_jwt, sign_key_proof
from schemas import topics
from tests.connectors.support import es256_keypair, records


def _with_key(gateway, tenant, dev) -> str:
    """Registers a new ES256 key for ``dev``; returns its private key."""
    priv, pub = es256_keypair()
    r = gateway.post(f"/v1/devices/{dev.device_id}/keys",
                     json={"public_key_pem": pub, "proof": sign_key_proof(priv, tenant.tenant_id, dev.device_id)},
                     headers={"Authorization": f"Bearer {tenant.token(gateway)}"})
    assert r.status_code == 201, r.text
    return priv


@pytest.fixture(scope="module")
def http_device(stack, factory, gateway):
    tenant = factory.tenant("http")
    dev, other = factory.device(tenant), factory.device(tenant)
    return {"tenant": tenant, "dev": dev, "other": other, "priv": _with_key(gateway, tenant, dev)}


def _sign(http_device, device_id: str) -> str:
    """A token signed with the fixture device's key, naming its tenant (iss) and ``device_id`` (sub)."""
    return sign_device_jwt(http_device["priv"], http_device["tenant"].tenant_id, device_id)


def _post(gateway, body, token=None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return gateway.post("/v1/ingest", content=data, headers={"Content-Type": "application/json", **headers})


def test_a_batch_is_stored_and_its_bad_reading_dead_lettered_while_the_good_ones_are_kept(http_device, gateway,
                                                                                           settings):
    t, dev = http_device["tenant"], http_device["dev"]
    ts = int(time.time() * 1000)
    token = _sign(http_device, dev.device_id)
    r = _post(gateway, [{"ts": ts, "values": {"temperature": 21.5, "door_open": False, "mode": "eco"}},
                        {"ts": ts + 1, "values": {"temperature": 22}},
                        {"ts": ts + 2, "values": {"temperature": [1, 2]}}], token)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2 and r.json()["rejected"][0]["code"] == "wrong_type"
    # 202 came after Kafka confirmed: the records are there now
    got = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                  lambda x: x["tenant_id"] == t.tenant_id and x["device_id"] == dev.device_id, count=2)
    by_ts = {x["event_time"]: x for x in got}
    assert by_ts[ts]["values"] == {"temperature": 21.5, "door_open": False, "mode": "eco"}
    assert by_ts[ts + 1]["values"] == {"temperature": 22.0} and by_ts[ts]["protocol"] == "http"
    assert by_ts[ts]["receive_time"] >= ts
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                   lambda x: x["device_id"] == dev.device_id and x["reason_code"] == "wrong_type")[0]
    assert dead["source"] == "http" and b"[1,2]" in dead["raw"] and dead["tenant_id"] == t.tenant_id


def test_invalid_json_is_400_with_the_error_model_and_dead_lettered_with_its_raw_bytes(http_device, gateway,
                                                                                       settings):
    dev = http_device["dev"]
    raw = b'{"values": {"temperature": 1' + uuid.uuid4().hex.encode()
    r = _post(gateway, raw, _sign(http_device, dev.device_id))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name, lambda x: x["raw"] == raw)
    assert dead and dead[0]["reason_code"] == "invalid_json" and dead[0]["device_id"] == dev.device_id


POISON = [  # (body, the reason code of its 400 and its dead letter): each raised inside the connector once
    (b'{"ts": NaN, "values": {"t": 1}}', "bad_timestamp"),
    (b'{"ts": Infinity, "values": {"t": 1}}', "bad_timestamp"),
    (b'{"values": {"s": "\\ud800"}}', "invalid_text"),
    (b'{"values": {"\\udfff": 1}}', "invalid_text"),
    (b'{"values": {"n": ' + b"9" * 400 + b"}}", "out_of_range"),
    (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
    (b'{"values":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001, "too_deep"),
]


def test_poison_bodies_get_a_400_with_a_reason_and_a_dead_letter_with_the_same(factory, gateway, settings):
    tenant = factory.tenant("http-poison")
    dev = factory.device(tenant)
    priv = _with_key(gateway, tenant, dev)
    for body, code in POISON:
        r = _post(gateway, body, sign_device_jwt(priv, tenant.tenant_id, dev.device_id))
        assert r.status_code == 400, (body[:40], r.status_code, r.text[:200])
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"], (body[:40], r.json())
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                   lambda x: x["device_id"] == dev.device_id, count=len(POISON))
    assert sorted(d["reason_code"] for d in dead) == sorted(code for _, code in POISON)
    assert all(d["reason"] and d["source"] == "http" and d["tenant_id"] == tenant.tenant_id for d in dead)
    assert {d["raw"] for d in dead} == {body for body, _ in POISON}
    # the device's next reading is stored as usual
    assert _post(gateway, {"values": {"t": 1}}, sign_device_jwt(priv, tenant.tenant_id, dev.device_id)).status_code == 202


def test_a_body_over_the_limit_is_413_even_without_a_content_length(http_device, gateway):
    from schemas.limits import MAX_PAYLOAD_BYTES

    def chunks():  # chunked transfer encoding: the server cannot know the size up front
        for _ in range(4 * MAX_PAYLOAD_BYTES // 65536):
            yield b"x" * 65536

    token = _sign(http_device, http_device["dev"].device_id)
    r = gateway.post("/v1/ingest", content=chunks(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_a_device_cannot_write_as_another_device_or_tenant(http_device, gateway, settings):
    """Ids in the body are ignored: the record is the signer's, never the named victim's."""
    t, dev, victim = http_device["tenant"], http_device["dev"], http_device["other"]
    marker = uuid.uuid4().hex
    r = _post(gateway, {"device_id": victim.device_id, "tenant_id": str(uuid.uuid4()),
                        "values": {"marker": marker}}, _sign(http_device, dev.device_id))
    assert r.status_code == 202
    rec = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                  lambda x: x["values"].get("marker") == marker)[0]
    assert (rec["tenant_id"], rec["device_id"]) == (t.tenant_id, dev.device_id)
    # a token whose subject claims the victim, signed with this device's key, is refused
    r = _post(gateway, {"values": {"x": 1}}, _sign(http_device, victim.device_id))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


def test_missing_forged_and_replayed_tokens_are_refused_with_401(http_device, gateway):
    dev = http_device["dev"]
    r = _post(gateway, {"values": {"x": 1}})
    assert r.status_code == 401 and r.headers.get("www-authenticate")
    assert r.json()["error"]["code"] == "unauthenticated"
    other_priv, _ = es256_keypair()
    unregistered = sign_device_jwt(other_priv, http_device["tenant"].tenant_id, dev.device_id)
    r = _post(gateway, {"values": {"x": 1}}, unregistered)
    assert r.status_code == 401 and "unknown_key" in r.json()["error"]["message"]
    token = _sign(http_device, dev.device_id)
    assert _post(gateway, {"values": {"x": 1}}, token).status_code == 202
    r = _post(gateway, {"values": {"x": 1}}, token)
    assert r.status_code == 401 and "token_replayed" in r.json()["error"]["message"]


def test_a_device_over_its_rate_limit_gets_429_and_the_batch_is_dead_lettered(http_device, gateway, settings):
    dev = http_device["dev"]
    batch = [{"values": {"n": i}} for i in range(int(settings.ingest_burst) + 50)]
    r = _post(gateway, batch, _sign(http_device, dev.device_id))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limited"
    dead = records(settings.bootstrap_servers, topics.DEAD_LETTER.name,
                   lambda x: x["device_id"] == dev.device_id and x["reason_code"] == "rate_limited")
    assert dead and json.loads(dead[0]["raw"])[0] == {"values": {"n": 0}}


def test_a_forwarded_client_certificate_is_ignored_from_an_untrusted_peer(http_device, gateway):
    cert = (http_device["dev"].cert_dir / "device.crt").read_text()
    r = _post(gateway, {"values": {"x": 1}}, **{"X-Client-Cert": urllib.parse.quote(cert)})
    assert r.status_code == 401


def test_a_forwarded_certificate_from_a_trusted_proxy_must_be_issued_by_its_tenant_ca(http_device, factory):
    """The gateway's certificate path with the platform's real tenant CA and a real device certificate."""
    dev = http_device["dev"]
    statuses = {(dev.tenant_id, dev.device_id): "active"}
    auth = DeviceAuthenticator(DeviceJwtVerifier(lambda kid: None),
                               tenant_ca=lambda t: factory.admin.cas.ca_certificate_pem(t),
                               device_status=lambda t, d: statuses.get((t, d)),
                               trusted_proxies=["10.0.0.0/8"])
    header = urllib.parse.quote((dev.cert_dir / "device.crt").read_text())
    assert auth.authenticate(None, header, "10.1.2.3") == (dev.tenant_id, dev.device_id)
    with pytest.raises(UnauthenticatedError):
        auth.authenticate(None, header, "192.168.1.5")  # not a trusted proxy
    forged = _self_signed(f"{dev.tenant_id}.{dev.device_id}")
    with pytest.raises(UnauthenticatedError, match="not issued by its tenant's CA"):
        auth.authenticate(None, urllib.parse.quote(forged), "10.1.2.3")
    statuses[(dev.tenant_id, dev.device_id)] = "suspended"
    with pytest.raises(DeviceDisabledError):
        auth.authenticate(None, header, "10.1.2.3")


def _self_signed(cn: str) -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()
