"""Findings 1 and 2 of issue 19 on the running platform: the control plane's API, the gateway's broker calls,
the MQTT connector and storage.

1. A device of tenant B that tries the connector's client ids or tenant A's device's id is refused at CONNECT;
   A's session and the connector's are untouched and every reading of A the broker acknowledged is stored.
2. Revoking one certificate (the device holds another), suspending a device and suspending its tenant cut the
   live session and refuse reconnects; resuming restores access. The time from the API call to the cut and to
   the refusal is printed (``-s``) for bench/results; the test only waits on conditions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from runtime.pki import PlatformPKI, write_private
from schemas.namespace import device_topics
from tests.broker.conftest import Identity, Session
from tests.gateway.helpers import bearer, platform_token
from tests.utils.factories import wait_for

CONNECTOR_IDS = ("fleetstream-connector-0", "fleetstream-connector-0-downlink")
REFUSED = 0x87


class _StackBroker:
    """What ``Session`` needs of a broker, for the stack's Mosquitto."""

    def __init__(self, settings):
        self.s = settings
        self.pki = PlatformPKI(settings.pki_dir)


def _identity(dev) -> Identity:
    return Identity(f"{dev.tenant_id}.{dev.device_id}", dev.cert_dir / "device.crt", dev.cert_dir / "device.key")


def _stored(gateway, token: str, device_id: str) -> list[dict]:
    r = gateway.get(f"/v1/devices/{device_id}/telemetry", params={"metric": "temperature", "limit": 1000},
                    headers=bearer(token))
    return r.json().get("points") or []


def _log_lines(path: Path, needle: str) -> int:
    return sum(needle in line for line in path.read_text(errors="replace").splitlines()) if path.exists() else 0


def test_a_foreign_device_cannot_take_the_connectors_or_a_devices_session_and_no_reading_is_lost(
        stack, factory, gateway, settings):
    tenant_a, tenant_b = factory.tenant("cid-a"), factory.tenant("cid-b")
    dev_a, dev_b = factory.device(tenant_a), factory.device(tenant_b)
    broker = _StackBroker(settings)
    connector_log, broker_log = settings.logs_dir / "connector-mqtt.log", settings.logs_dir / "mosquitto-broker.log"
    connector_sessions = _log_lines(connector_log, "as fleetstream-connector-0, subscribed")
    a_id = f"{dev_a.tenant_id}.{dev_a.device_id}"
    a = Session(broker, _identity(dev_a), a_id)
    assert a.connect() == 0
    topic = device_topics(dev_a.tenant_id, dev_a.device_id)["telemetry"]
    base = int(time.time() * 1000)
    acked, refused = [], []
    try:
        for i in range(60):
            code = a.publish(topic, json.dumps({"ts": base + i, "values": {"temperature": float(i)}}))
            if code == 0:
                acked.append(base + i)
            if i % 10 == 5:  # B's device tries every id it should not have, between A's readings
                for stolen in (*CONNECTOR_IDS, a_id):
                    intruder = Session(broker, _identity(dev_b), stolen)
                    refused.append(intruder.connect())
                    intruder.close()
        assert refused == [REFUSED] * 18
        assert len(acked) == 60 and a.connected and not a.disconnects
    finally:
        a.close()
    token = tenant_a.token(gateway)
    points = wait_for(lambda: (p := _stored(gateway, token, dev_a.device_id)) and len(p) >= len(acked) and p,
                      timeout=90, what="every acknowledged reading of A to be stored")
    assert len(points) == len(acked)
    # the connector never lost its session: no takeover in the broker's log, no reconnect in the connector's
    assert _log_lines(broker_log, "already connected, closing old connection") == 0
    assert _log_lines(connector_log, "as fleetstream-connector-0, subscribed") == connector_sessions


def _cut_and_refused(session: Session, call, reconnect) -> tuple[float, float]:
    """Runs ``call`` (an API request); returns seconds until the live session was closed and until a reconnect
    was refused."""
    t0 = time.monotonic()
    r = call()
    assert r.status_code == 200, r.text
    session.wait(lambda: session.disconnects, timeout=30, what="the live session to be closed")
    cut = time.monotonic() - t0
    again = reconnect()
    assert again.connect() == REFUSED
    again.close()
    return cut, time.monotonic() - t0


def test_revocation_and_suspension_cut_sessions_and_refuse_reconnects_through_the_api(
        stack, factory, gateway, settings):
    t, bystander_t = factory.tenant("rev"), factory.tenant("rev-other")
    dev, other_dev = factory.device(t), factory.device(t)
    bystander_dev = factory.device(bystander_t)
    broker = _StackBroker(settings)
    h = bearer(t.token(gateway))
    cn = f"{dev.tenant_id}.{dev.device_id}"
    timings: dict[str, tuple[float, float]] = {}

    # a second certificate of the same device; the first one is then revoked
    r = gateway.post(f"/v1/devices/{dev.device_id}/certificates", json={}, headers=h)
    assert r.status_code == 201, r.text
    second = r.json()
    d2 = dev.cert_dir.parent / f"{dev.device_id}-second"
    d2.mkdir(exist_ok=True)
    (d2 / "device.crt").write_text(second["certificate_pem"])
    write_private(d2 / "device.key", second["private_key_pem"].encode())
    first_serial = next(c["serial"] for c in gateway.get(f"/v1/devices/{dev.device_id}/certificates", headers=h).json()
                        if c["serial"] != second["serial"])
    old = Session(broker, _identity(dev), cn)
    assert old.connect() == 0
    timings["revoke one certificate"] = _cut_and_refused(
        old, lambda: gateway.post(f"/v1/devices/{dev.device_id}/certificates/{first_serial}/revoke", headers=h),
        lambda: Session(broker, _identity(dev), cn))
    new = Session(broker, Identity(cn, d2 / "device.crt", d2 / "device.key"), cn)
    assert new.connect() == 0  # the device's other certificate still works
    assert new.publish(device_topics(dev.tenant_id, dev.device_id)["telemetry"], '{"values": {"temperature": 1}}') == 0

    # suspend the device, then resume it
    timings["suspend device"] = _cut_and_refused(
        new, lambda: gateway.post(f"/v1/devices/{dev.device_id}/suspend", headers=h),
        lambda: Session(broker, Identity(cn, d2 / "device.crt", d2 / "device.key"), cn))
    assert gateway.post(f"/v1/devices/{dev.device_id}/resume", headers=h).status_code == 200
    back = Session(broker, Identity(cn, d2 / "device.crt", d2 / "device.key"), cn)
    assert back.connect() == 0
    back.close()

    # suspend the tenant: every device of it, not the other tenant's; then reactivate
    other_cn = f"{other_dev.tenant_id}.{other_dev.device_id}"
    other = Session(broker, _identity(other_dev), other_cn)
    bystander = Session(broker, _identity(bystander_dev), f"{bystander_dev.tenant_id}.{bystander_dev.device_id}")
    assert other.connect() == 0 and bystander.connect() == 0
    ph = bearer(platform_token(settings))
    timings["suspend tenant"] = _cut_and_refused(
        other, lambda: gateway.patch(f"/v1/admin/tenants/{t.tenant_id}", json={"status": "suspended"}, headers=ph),
        lambda: Session(broker, _identity(other_dev), other_cn))
    assert Session(broker, Identity(cn, d2 / "device.crt", d2 / "device.key"), cn).connect() == REFUSED
    assert bystander.connected and not bystander.disconnects
    r = gateway.patch(f"/v1/admin/tenants/{t.tenant_id}", json={"status": "active"}, headers=ph)
    assert r.status_code == 200, r.text
    resumed = Session(broker, _identity(other_dev), other_cn)
    assert resumed.connect() == 0
    for s in (resumed, bystander):
        s.close()
    for what, (cut, refused) in timings.items():
        print(f"broker-timing {what}: session closed {cut * 1000:.0f} ms, reconnect refused {refused * 1000:.0f} ms "
              "after the API call")


def test_identities_cut_off_in_postgres_alone_are_denied_by_the_reconcile(stack, factory, settings):
    """A device suspended, and a certificate revoked, before the access plugin existed (or on a broker that lost
    its disk) are in Postgres only: the gateway's start-up reconcile puts them on the broker's deny list."""
    import psycopg

    tenant = factory.tenant("reconcile")
    dev = factory.device(tenant)
    broker = _StackBroker(settings)
    cid = f"{dev.tenant_id}.{dev.device_id}"
    probe = Session(broker, _identity(dev), cid)
    assert probe.connect() == 0
    probe.close()
    # what an older control plane left behind: the status changed in Postgres, the broker never told
    with psycopg.connect(settings.owner_dsn) as conn:
        conn.execute("update devices set status = 'suspended' where tenant_id = %s and device_id = %s",
                     (dev.tenant_id, dev.device_id))
    again = Session(broker, _identity(dev), cid)
    assert again.connect() == 0, "the broker already refuses: this test would prove nothing"
    counts = factory.admin.reconcile_broker_access()
    assert counts["devices"] >= 1
    again.wait(lambda: again.disconnects, timeout=30, what="the live session cut by the reconcile")
    refused = Session(broker, _identity(dev), cid)
    assert refused.connect() == REFUSED
    refused.close()
    again.close()
