"""Fleet-scale provisioning (adr/0035), from an integrator's side: devices registered in one bulk call
each connect with the certificate that call returned, publish on their own topics only, and a suspended
one is cut off; devices seeded into a stopped broker's file are enforced the same way."""

from __future__ import annotations

import json
import uuid

import pytest

from fleetstream.stack.mosquitto import _dynsec_initial, dynsec_file, seed_dynsec
from gateway.broker.dynsec import commands_per_message, device_entries
from runtime.settings import Settings
from schemas.namespace import device_topics
from tests.gateway.helpers import bearer
from tests.gateway.test_device_identity import Device, _assert_cut_off
from tests.utils.factories import wait_for


def _device(settings, tmp_path, tenant_id: str, report: dict, row: dict) -> Device:
    d = tmp_path / row["device_id"]
    d.mkdir()
    return Device(settings, d, row["certificate_pem"], row["private_key_pem"], report["ca_pem"],
                  f"{tenant_id}.{row['device_id']}")


def test_bulk_devices_each_publish_only_on_their_own_topics_and_a_suspended_one_is_cut_off(
        stack, factory, gateway, settings, tmp_path):
    t = factory.tenant("bulk")
    h = bearer(t.token(gateway))
    ids = [f"meter-{i}" for i in range(5)]
    r = gateway.post("/v1/devices/bulk", headers=h, timeout=60, json={
        "devices": [{"device_id": d, "device_type": "meter", "tags": ["bulk"]} for d in ids],
        "issue_certificates": True})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["created"] == 5 and report["failed"] == 0
    assert [row["device_id"] for row in report["devices"]] == ids
    devices = {row["device_id"]: _device(settings, tmp_path, t.tenant_id, report, row) for row in report["devices"]}

    for i, (device_id, dev) in enumerate(devices.items()):
        assert dev.connect(), f"{device_id}: CONNACK {dev.connack}"
        mine = device_topics(t.tenant_id, device_id)
        neighbour = ids[(i + 1) % len(ids)]
        assert not dev.publish(mine["telemetry"]).is_failure, device_id
        assert dev.publish(device_topics(t.tenant_id, neighbour)["telemetry"]).value == 135, device_id

    listed = gateway.get("/v1/devices", params={"tag": "bulk"}, headers=h).json()
    assert sorted(d["device_id"] for d in listed["data"]) == ids

    assert gateway.post("/v1/devices/meter-2/suspend", headers=h).status_code == 200
    wait_for(devices["meter-2"].disconnected.is_set, timeout=30, what="the broker to drop the suspended device")
    _assert_cut_off(devices["meter-2"], device_topics(t.tenant_id, "meter-2")["telemetry"])
    # the others keep their sessions and their rights
    assert not devices["meter-3"].publish(device_topics(t.tenant_id, "meter-3")["telemetry"]).is_failure
    for device_id, dev in devices.items():
        if device_id != "meter-2":
            dev.close()


def test_bulk_reports_each_refused_device_and_keeps_the_others(stack, factory, gateway):
    t = factory.tenant("bulkdup")
    h = bearer(t.token(gateway))
    assert gateway.post("/v1/devices", json={"device_id": "taken"}, headers=h).status_code == 201
    r = gateway.post("/v1/devices/bulk", headers=h, json={
        "devices": [{"device_id": "new-1"}, {"device_id": "taken"}, {"device_id": "new-1"}, {"device_id": "new-2"}]})
    assert r.status_code == 200, r.text
    rows = r.json()["devices"]
    assert [(x["index"], x["status"], x["code"]) for x in rows] == [
        (0, "created", None), (1, "error", "device_exists"), (2, "error", "device_exists"), (3, "created", None)]
    assert all(x["certificate_pem"] is None for x in rows)  # none asked for
    bad = gateway.post("/v1/devices/bulk", headers=h, json={"devices": [{"device_id": "-bad"}]})
    assert bad.status_code == 422
    too_many = gateway.post("/v1/devices/bulk", headers=h, json={"devices": [{"device_id": f"d{i}"} for i in range(1001)]})
    assert too_many.status_code == 422


def test_bulk_needs_a_token_with_devices_write(stack, factory, gateway):
    """The same guard as every device route (the cross-tenant matrix in test_matrix.py lists the others):
    the tenant comes from the token, so another tenant cannot register into this one at all."""
    t = factory.tenant("bulkauth")
    body = {"devices": [{"device_id": "x-1"}]}
    assert gateway.post("/v1/devices/bulk", json=body).status_code == 401
    read_only = bearer(t.token(gateway, scope="devices:read"))
    assert gateway.post("/v1/devices/bulk", json=body, headers=read_only).status_code == 403
    assert gateway.get("/v1/devices/x-1", headers=read_only).status_code == 404


def test_admin_create_devices_writes_each_devices_credentials(stack, factory, tmp_path):
    """What the simulator and the CLI use for a fleet: one call, a certificate folder per device."""
    from tests.utils.factories import TestDevice, publish_json

    t = factory.tenant("fleet")
    out = factory.admin.create_devices(t.tenant_id, ["f-1", "f-2"], cert_root=tmp_path, device_type="meter",
                                       tags=["sim"], actor="test")
    assert [(r["device_id"], r["status"]) for r in out] == [("f-1", "created"), ("f-2", "created")]
    again = factory.admin.create_devices(t.tenant_id, ["f-2"], cert_root=tmp_path, actor="test")
    assert again[0]["code"] == "device_exists"
    for d in ("f-1", "f-2"):
        c = factory.mqtt_client(TestDevice(t.tenant_id, d, tmp_path / d))
        acks = {}
        c.on_publish = lambda _c, _u, mid, rc, _p, acks=acks: acks.__setitem__(mid, rc)
        info = publish_json(c, device_topics(t.tenant_id, d)["telemetry"], {"values": {"temperature": 1}})
        rc = wait_for(lambda info=info, acks=acks: acks.get(info.mid), timeout=30, what="PUBACK")
        assert not rc.is_failure, (d, rc)
        c.disconnect()
        c.loop_stop()


def test_control_messages_shrink_as_the_broker_knows_more_devices():
    """Mosquitto 2.0.11 rewrites its whole file per command: a message may carry fewer commands the more
    devices the broker holds, but always at least one device's pair."""
    sizes = [commands_per_message(n) for n in (0, 100, 1_000, 10_000, 1_000_000)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 2


def test_seeding_adds_each_device_once_and_keeps_what_the_file_holds(tmp_path):
    s = Settings(data_dir=tmp_path)
    entries = [device_entries("t1", f"d{i}") for i in range(3)]
    roles, clients = [e[0] for e in entries], [e[1] for e in entries]
    assert seed_dynsec(s, roles, clients) == 3
    assert seed_dynsec(s, roles, clients) == 0  # a re-run adds nothing twice
    doc = json.loads(dynsec_file(s).read_text())
    initial = _dynsec_initial()
    assert doc["defaultACLAccess"] == initial["defaultACLAccess"]
    assert {c["username"] for c in doc["clients"]} == {c["username"] for c in initial["clients"]} | {
        "t1.d0", "t1.d1", "t1.d2"}
    role = next(r for r in doc["roles"] if r["rolename"] == "device:t1.d1")
    assert {a["topic"] for a in role["acls"]} == {"fs/t1/d1/#"}


@pytest.mark.parametrize("n", [3])
def test_devices_seeded_while_the_broker_is_stopped_are_enforced(stack, factory, gateway, settings, tmp_path, n):
    """The fleet-bootstrap path: rows, certificates and registry entries through the bulk functions, the
    broker's entries written into its file while it is stopped; then the same rules as the live path."""
    from gateway.identity.provisioning import create_devices, issue_certificates

    t = factory.tenant("seed")
    ids = [f"seeded-{i}" for i in range(n)]
    collected: list[tuple[dict, dict]] = []
    items = [({"index": i, "device_id": d}, {"device_id": d, "device_type": None, "tags": [], "attributes": {}})
             for i, d in enumerate(ids)]
    res = create_devices(factory.admin, t.tenant_id, items, actor="test",
                         authorise=lambda tenant, devs: collected.extend(device_entries(tenant, d) for d in devs))
    assert [r["status"] for r in res] == ["created"] * n
    issued = issue_certificates(factory.admin, t.tenant_id, ids, actor="test")

    broker = next(c for c in stack.children if c.name == "mosquitto")
    from fleetstream.stack.mosquitto import mqtt_ready

    if factory.admin._dynsec is not None:  # this process's broker client: reopened after the restart
        factory.admin._dynsec.close()
        factory.admin._dynsec = None
    broker.stop()
    try:
        assert seed_dynsec(settings, [r for r, _ in collected], [c for _, c in collected]) == n
    finally:
        broker.start()
        broker.wait_until(lambda: mqtt_ready(settings, stack.pki), 30, "mosquitto after seeding")
        # the gateway's and connector's broker clients reconnect on their own; later tests need them
        h = bearer(t.token(gateway))
        wait_for(lambda: gateway.post("/v1/devices", json={"device_id": f"after-{uuid.uuid4().hex[:6]}"},
                                      headers=h).status_code == 201, timeout=60, what="the gateway's broker client back")
    ca = stack.pki.ca_cert.read_text()
    for i, d in enumerate(ids):
        (tmp_path / d).mkdir()
        dev = Device(settings, tmp_path / d, issued[d].certificate_pem, issued[d].private_key_pem, ca,
                     f"{t.tenant_id}.{d}")
        assert dev.connect(), f"{d}: CONNACK {dev.connack}"
        assert not dev.publish(device_topics(t.tenant_id, d)["telemetry"]).is_failure
        assert dev.publish(device_topics(t.tenant_id, ids[(i + 1) % n])["telemetry"]).value == 135
        dev.close()
    # the live path works on the seeded file: suspending a seeded device cuts it off
    factory.admin.change_status(t.tenant_id, ids[0], "suspend", actor="test")
    (tmp_path / "again").mkdir()
    dev = Device(settings, tmp_path / "again", issued[ids[0]].certificate_pem, issued[ids[0]].private_key_pem, ca,
                 f"{t.tenant_id}.{ids[0]}")
    _assert_cut_off(dev, device_topics(t.tenant_id, ids[0])["telemetry"])
