"""Device identity on the real broker, from a device integrator's point of view: a device with a
certificate from the API publishes on its own topics and is refused (PUBACK 135) on another device's;
suspension and decommissioning drop its live session and refuse reconnects; a device provisions itself
with a claim token, and an exhausted or expired claim token is refused with a clear code."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt
import psycopg
import pytest

from schemas.namespace import device_topics
from tests.gateway.helpers import bearer, make_csr, new_key_pem
from tests.utils.factories import wait_for


class Device:
    """A paho MQTT 5 client holding what the API gave the device; records PUBACK reason codes."""

    def __init__(self, settings, tmp_path, cert_chain: str, key_pem: str, ca_pem: str, client_id: str):
        (tmp_path / "chain.pem").write_text(cert_chain)
        (tmp_path / "key.pem").write_text(key_pem)
        (tmp_path / "ca.pem").write_text(ca_pem)
        self.settings, self.dir, self.client_id = settings, tmp_path, client_id
        self.acks: dict[int, mqtt.ReasonCode] = {}
        self.connack: mqtt.ReasonCode | None = None
        self.connected, self.disconnected = threading.Event(), threading.Event()
        self.c = self._client()

    def _client(self) -> mqtt.Client:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.dir / "ca.pem"))
        ctx.load_cert_chain(str(self.dir / "chain.pem"), str(self.dir / "key.pem"))
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *_: self.disconnected.set()
        self.acks = {}  # a new client numbers its messages from 1 again
        c.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc)
        return c

    def _on_connect(self, _c, _u, _f, rc, _p):
        self.connack = rc
        if not rc.is_failure:
            self.connected.set()

    def connect(self) -> bool:
        self.connected.clear()
        self.disconnected.clear()
        try:
            self.c.connect(self.settings.mqtt_broker_host, self.settings.mqtt_tls_port, keepalive=30)
        except (OSError, ssl.SSLError):
            return False
        self.c.loop_start()
        wait_for(lambda: self.connected.is_set() or self.disconnected.is_set(), timeout=30, what="CONNACK")
        return self.connected.is_set()

    def publish(self, topic: str) -> mqtt.ReasonCode:
        info = self.c.publish(topic, '{"values": {"temperature": 1}}', qos=1)
        return wait_for(lambda: self.acks.get(info.mid), timeout=30, what="PUBACK")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _assert_cut_off(dev: Device, topic: str) -> None:
    """A reconnect is refused: at CONNECT, or (Mosquitto 2.0 with certificate identities, adr/0033) every
    publish on the device's own topic is refused with 135 Not authorized."""
    dev.c.loop_stop()
    dev.c = dev._client()
    if dev.connect():
        assert dev.publish(topic).value == 135, "a cut-off device must not publish"
        dev.close()
    else:
        dev.c.loop_stop()


def _register_with_csr(gateway, token, device_id):
    h = bearer(token)
    assert gateway.post("/v1/devices", json={"device_id": device_id}, headers=h).status_code == 201
    key, key_pem = new_key_pem()
    r = gateway.post(f"/v1/devices/{device_id}/certificates", json={"csr_pem": make_csr(key, cn="evil.other")},
                     headers=h)
    assert r.status_code == 201, r.text
    return r.json(), key_pem


def test_certificate_device_publishes_on_its_own_topics_only(stack, factory, gateway, settings, tmp_path):
    t = factory.tenant("ident")
    token = t.token(gateway)
    issued, key_pem = _register_with_csr(gateway, token, "pump-1")
    _register_with_csr(gateway, token, "pump-2")
    dev = Device(settings, tmp_path, issued["certificate_pem"], key_pem, issued["ca_pem"], f"{t.tenant_id}.pump-1")
    assert dev.connect(), f"CONNACK {dev.connack}"
    mine, theirs = device_topics(t.tenant_id, "pump-1"), device_topics(t.tenant_id, "pump-2")
    assert not dev.publish(mine["telemetry"]).is_failure
    assert not dev.publish(mine["shadow_reported"]).is_failure
    refused = dev.publish(theirs["telemetry"])
    assert refused.value == 135, refused  # Not authorized
    assert dev.publish(f"fs/{t.tenant_id}/pump-2/status").value == 135
    dev.close()


def test_suspend_and_decommission_drop_the_session_and_refuse_reconnects(stack, factory, gateway, settings, tmp_path):
    t = factory.tenant("life")
    token = t.token(gateway)
    issued, key_pem = _register_with_csr(gateway, token, "valve-1")
    dev = Device(settings, tmp_path, issued["certificate_pem"], key_pem, issued["ca_pem"], f"{t.tenant_id}.valve-1")
    assert dev.connect()
    topic = device_topics(t.tenant_id, "valve-1")["telemetry"]
    assert not dev.publish(topic).is_failure

    r = gateway.post("/v1/devices/valve-1/suspend", headers=bearer(token))
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    wait_for(dev.disconnected.is_set, timeout=30, what="the broker to drop the suspended device")
    _assert_cut_off(dev, topic)

    r = gateway.post("/v1/devices/valve-1/resume", headers=bearer(token))
    # back to active once a connection event was seen, else to provisioned (events may still be in flight)
    assert r.status_code == 200 and r.json()["status"] in ("active", "provisioned")
    dev.c = dev._client()
    assert dev.connect(), f"resumed device reconnects: {dev.connack}"
    assert not dev.publish(topic).is_failure, "a resumed device publishes again"

    r = gateway.post("/v1/devices/valve-1/decommission", headers=bearer(token))
    assert r.status_code == 200 and r.json()["status"] == "decommissioned"
    wait_for(dev.disconnected.is_set, timeout=30, what="the broker to drop the decommissioned device")
    dev.c.loop_stop()
    certs = gateway.get("/v1/devices/valve-1/certificates", headers=bearer(token)).json()
    assert [c["status"] for c in certs] == ["revoked"]
    crl = gateway.get("/v1/ca/crl", params={"format": "pem"}, headers=bearer(token))
    from cryptography import x509

    revoked = x509.load_pem_x509_crl(crl.content)
    assert revoked.get_revoked_certificate_by_serial_number(int(certs[0]["serial"], 16)) is not None
    r = gateway.post("/v1/devices/valve-1/resume", headers=bearer(token))
    assert r.status_code == 409 and r.json()["error"]["code"] == "device_decommissioned"


def test_decommissioned_device_reconnect_is_refused(stack, factory, gateway, settings, tmp_path):
    t = factory.tenant("gone")
    token = t.token(gateway)
    issued, key_pem = _register_with_csr(gateway, token, "gone-1")
    dev = Device(settings, tmp_path, issued["certificate_pem"], key_pem, issued["ca_pem"], f"{t.tenant_id}.gone-1")
    assert dev.connect()
    assert gateway.post("/v1/devices/gone-1/decommission", headers=bearer(token)).status_code == 200
    wait_for(dev.disconnected.is_set, timeout=30, what="the broker to drop the decommissioned device")
    _assert_cut_off(dev, device_topics(t.tenant_id, "gone-1")["telemetry"])


def test_claim_token_self_provisioning_and_refusals(stack, factory, gateway, settings, tmp_path):
    t = factory.tenant("claim")
    token = t.token(gateway)
    r = gateway.post("/v1/claim-tokens", json={"name": "line 3", "max_uses": 1, "device_type": "meter",
                                               "tags": ["batch-7"]}, headers=bearer(token))
    assert r.status_code == 201, r.text
    claim, claim_id = r.json()["claim_token"], r.json()["id"]

    key, key_pem = new_key_pem()
    r = gateway.post("/v1/provision", json={"claim_token": claim, "device_id": "meter-1", "csr_pem": make_csr(key)})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["tenant_id"] == t.tenant_id and out["topics"]["telemetry"] == f"fs/{t.tenant_id}/meter-1/telemetry"
    dev = Device(settings, tmp_path, out["certificate_pem"], key_pem, out["ca_pem"], f"{t.tenant_id}.meter-1")
    assert dev.connect()
    assert not dev.publish(out["topics"]["telemetry"]).is_failure
    dev.close()
    got = gateway.get("/v1/devices/meter-1", headers=bearer(token)).json()
    assert got["device_type"] == "meter" and got["tags"] == ["batch-7"]

    r = gateway.post("/v1/provision", json={"claim_token": claim, "device_id": "meter-2", "csr_pem": make_csr(key)})
    assert r.status_code == 403 and r.json()["error"]["code"] == "claim_token_exhausted"
    assert gateway.get("/v1/devices/meter-2", headers=bearer(token)).status_code == 404

    r = gateway.post("/v1/claim-tokens", json={"max_uses": 5}, headers=bearer(token))
    expiring, expiring_id = r.json()["claim_token"], r.json()["id"]
    with psycopg.connect(settings.owner_dsn) as conn:  # time passes: the token's expiry is now behind us
        conn.execute("update claim_tokens set expires_at = now() - interval '1 second' where id = %s", (expiring_id,))
    r = gateway.post("/v1/provision", json={"claim_token": expiring, "device_id": "meter-3", "csr_pem": make_csr(key)})
    assert r.status_code == 401 and r.json()["error"]["code"] == "claim_token_expired"

    r = gateway.post("/v1/provision", json={"claim_token": "fsct_made-up-token", "device_id": "meter-4",
                                            "csr_pem": make_csr(key)})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_claim_token"
    assert gateway.get(f"/v1/claim-tokens/{claim_id}", headers=bearer(token)).json()["used_count"] == 1


@pytest.mark.parametrize("bad", ["not a csr", None])
def test_bad_csr_is_a_clear_422_and_creates_nothing(stack, factory, gateway, bad):
    t = factory.tenant("csr")
    token = t.token(gateway)
    r = gateway.post("/v1/claim-tokens", json={"max_uses": 3}, headers=bearer(token))
    claim = r.json()["claim_token"]
    r = gateway.post("/v1/provision", json={"claim_token": claim, "device_id": "x-1", "csr_pem": bad or ""})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_csr"
    assert gateway.get("/v1/devices/x-1", headers=bearer(token)).status_code == 404
    r = gateway.get("/v1/claim-tokens", headers=bearer(token)).json()
    assert r["data"][0]["used_count"] == 0  # a refused provisioning does not spend a use
