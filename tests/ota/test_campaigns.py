"""Staged OTA campaigns as a fleet operator runs them, against simulated devices that are real MQTT
clients with certificates: jobs arrive on each device's command topic, progress comes back as command
acks, downloads use the per-device links with Range requests, and the device verifies the signed manifest
before it installs anything."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from tests.ota.helpers import auth, campaign_state, device_type, jobs, random_image, upload, wait_campaign
from tests.ota.ota_device import Behaviour, OtaDevice
from tests.utils.factories import wait_for

# the restart test's soak: long enough that the gateway's clean stop (~7 s at a load of 25) ends inside it
SOAK_S = 15


@pytest.fixture
def fleet(stack, factory, gateway):
    """A tenant with a device type, firmware 1.0.0 and 1.1.0, and a helper to make OTA devices."""
    t = factory.tenant("ota")
    token = t.token(gateway)
    dtype = device_type()
    for v in ("1.0.0", "1.1.0"):
        assert upload(gateway, token, dtype, v, random_image()).status_code == 201
    pem = gateway.get("/v1/firmware/signing-key", headers=auth(token)).json()["public_key_pem"]
    made: list[OtaDevice] = []

    def make(n: int, behaviour: Behaviour | None = None, connect: bool = True, tags=("site-a",)) -> list[OtaDevice]:
        out = []
        for _ in range(n):
            dev = factory.device(t, device_type=dtype, tags=list(tags))
            d = OtaDevice(factory, dev, "1.0.0", pem, dtype, behaviour or Behaviour())
            out.append(d.connect() if connect else d)
        made.extend(out)
        return out

    ns = type("Fleet", (), {"tenant": t, "token": token, "device_type": dtype, "make": staticmethod(make)})
    yield ns
    for d in made:
        d.disconnect()


def _create(gateway, fleet, **kw):
    body = {"target": {"device_type": fleet.device_type, "tags": ["site-a"]}, "target_version": "1.1.0",
            "soak_s": 1, "max_concurrent": 10, "device_deadline_s": 120, "redeliver_s": 5} | kw
    r = gateway.post("/v1/ota/campaigns", headers=auth(fleet.token), json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_staged_rollout_completes_wave_by_wave(fleet, gateway):
    devices = fleet.make(4)
    c = _create(gateway, fleet, waves=[25, 50, 100], max_concurrent=1)
    assert [w["devices"] for w in c["waves"]] == [1, 1, 2]

    done = wait_campaign(gateway, fleet.token, c["id"], {"completed", "aborted", "paused"}, timeout=120)
    assert done["state"] == "completed", done
    by_device = jobs(gateway, fleet.token, c["id"])
    assert {j["state"] for j in by_device.values()} == {"succeeded"}
    assert all(j["from_version"] == "1.0.0" for j in by_device.values())
    for d in devices:
        assert d.version == "1.1.0"
        assert any(r.endswith("-> 206") for r in d.range_requests)  # resumed download
        # the running version, as the device reported it into its shadow (issue 5's shadow agent)
        wait_for(lambda d=d: gateway.get(f"/v1/devices/{d.device.device_id}/shadow", headers=auth(fleet.token))
                 .json().get("reported", {}).get("firmware") == {"version": "1.1.0"}, timeout=60,
                 what="the new version in the reported shadow")
    # a later wave's job was only sent after every device of the earlier waves had finished
    order = sorted(by_device.values(), key=lambda j: j["wave"])
    for earlier in order:
        for later in order:
            if later["wave"] > earlier["wave"]:
                assert later["sent_at"] > earlier["reported_at"], (earlier, later)


def test_failure_threshold_aborts_and_failed_devices_are_rolled_back(fleet, gateway):
    failing = fleet.make(4, Behaviour(fail_install=True))
    c = _create(gateway, fleet, waves=[50, 100], failure_threshold=0.25, on_threshold="abort", rollback="failed")
    aborted = wait_campaign(gateway, fleet.token, c["id"], {"aborted", "completed", "paused"}, timeout=120)
    assert aborted["state"] == "aborted" and "failure threshold" in aborted["reason"]
    by_device = jobs(gateway, fleet.token, c["id"])
    first = [j["device_id"] for j in by_device.values() if j["wave"] == 0]
    second = [j["device_id"] for j in by_device.values() if j["wave"] == 1]
    assert len(first) == len(second) == 2
    assert all(by_device[d]["state"] == "skipped" and by_device[d]["sent_at"] is None for d in second)
    dev = {d.device.device_id: d for d in failing}
    for d in second:
        assert dev[d].received == []  # the rollout stopped before them
    for d in first:
        wait_for(lambda d=d: jobs(gateway, fleet.token, c["id"])[d]["state"] == "rolled_back", timeout=60,
                 what=f"{d} rolled back")
        assert "install_failed" in jobs(gateway, fleet.token, c["id"])[d]["reason"]
        assert dev[d].names_received()[-1] == "ota.rollback" and dev[d].version == "1.0.0"


def test_offline_device_gets_its_job_when_it_reconnects(fleet, gateway):
    online = fleet.make(1)
    offline = fleet.make(1, connect=False)[0]
    c = _create(gateway, fleet, waves=[100], redeliver_s=2)
    wait_for(lambda: jobs(gateway, fleet.token, c["id"])[online[0].device.device_id]["state"] == "succeeded",
             timeout=60, what="the online device to finish")
    assert jobs(gateway, fleet.token, c["id"])[offline.device.device_id]["state"] == "sent"
    assert wait_campaign(gateway, fleet.token, c["id"], {"running"})["state"] == "running"  # waits for it
    offline.connect()
    done = wait_campaign(gateway, fleet.token, c["id"], {"completed", "aborted"}, timeout=90)
    assert done["state"] == "completed"
    j = jobs(gateway, fleet.token, c["id"])[offline.device.device_id]
    assert j["state"] == "succeeded" and j["attempts"] >= 2 and offline.version == "1.1.0"


def test_tampered_artifact_is_rejected_by_the_device(fleet, gateway, settings):
    dev = fleet.make(1)[0]
    data = random_image()
    rel = upload(gateway, fleet.token, fleet.device_type, "1.2.0", data).json()
    blob = settings.root / "firmware" / "sha256" / rel["sha256"][:2] / rel["sha256"]
    os.chmod(blob, 0o644)
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # one flipped bit in storage or in transit
    c = _create(gateway, fleet, target_version="1.2.0", waves=[100], rollback="none", failure_threshold=1)
    wait_for(lambda: jobs(gateway, fleet.token, c["id"])[dev.device.device_id]["state"] == "failed", timeout=60,
             what="the device to refuse the image")
    j = jobs(gateway, fleet.token, c["id"])[dev.device.device_id]
    assert "verification_failed" in j["reason"] and "sha256" in j["reason"]
    assert dev.version == "1.0.0"  # nothing was installed
    assert not any(r["result"]["state"] == "installing" for r in dev.reports if "result" in r)


def test_pause_resume_cancel_and_status(fleet, gateway, factory):
    fleet.make(2, connect=False)
    c = _create(gateway, fleet, waves=[50, 100])
    tok = fleet.token
    assert gateway.post(f"/v1/ota/campaigns/{c['id']}/pause", headers=auth(tok)).json()["state"] == "paused"
    again = gateway.post(f"/v1/ota/campaigns/{c['id']}/pause", headers=auth(tok))
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
    assert gateway.post(f"/v1/ota/campaigns/{c['id']}/resume", headers=auth(tok)).json()["state"] == "running"
    cancelled = gateway.post(f"/v1/ota/campaigns/{c['id']}/cancel", headers=auth(tok)).json()
    assert cancelled["state"] == "cancelled"
    assert {j["state"] for j in jobs(gateway, tok, c["id"]).values()} == {"cancelled"}
    # a reader of devices sees campaigns and their devices but cannot steer them
    viewer = fleet.tenant.token(gateway, scope="devices:read")
    assert c["id"] in [x["id"] for x in gateway.get("/v1/ota/campaigns", headers=auth(viewer)).json()["data"]]
    assert gateway.get(f"/v1/ota/campaigns/{c['id']}", headers=auth(viewer)).json()["state"] == "cancelled"
    assert gateway.get(f"/v1/ota/campaigns/{c['id']}/devices", headers=auth(viewer)).status_code == 200
    refused = gateway.post(f"/v1/ota/campaigns/{c['id']}/resume", headers=auth(viewer))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    blind = gateway.get("/v1/ota/campaigns", headers=auth(fleet.tenant.token(gateway, scope="telemetry:read")))
    assert blind.status_code == 403 and "devices:read" in blind.json()["error"]["message"]
    stranger = factory.tenant("stranger").token(gateway)
    assert gateway.get(f"/v1/ota/campaigns/{c['id']}", headers=auth(stranger)).status_code == 404
    assert gateway.post(f"/v1/ota/campaigns/{c['id']}/resume", headers=auth(stranger)).status_code == 404
    dup = gateway.post("/v1/ota/campaigns", headers=auth(tok),
                       json={"target": {"device_type": fleet.device_type}, "target_version": "7.7.7"})
    assert dup.status_code == 422 and dup.json()["error"]["code"] == "unknown_release"


def test_silent_device_is_told_to_roll_back_after_its_deadline(fleet, gateway):
    silent = fleet.make(1, Behaviour(ignore_updates=True))[0]
    c = _create(gateway, fleet, waves=[100], rollback="failed_or_silent", device_deadline_s=8, redeliver_s=3,
                failure_threshold=1)
    did = silent.device.device_id
    wait_for(lambda: jobs(gateway, fleet.token, c["id"])[did]["state"] == "rolled_back", timeout=90,
             what="the silent device to be rolled back")
    assert silent.names_received().count("ota.update") >= 2  # redelivered while it stayed silent
    assert silent.names_received()[-1] == "ota.rollback" and silent.version == "1.0.0"
    assert wait_campaign(gateway, fleet.token, c["id"], {"completed"})["state"] == "completed"


def test_forged_manifest_is_rejected_by_the_device(fleet, gateway, settings):
    """A job whose manifest was altered after signing (here: a different version) never gets installed."""
    import json
    import time

    from confluent_kafka import Producer

    from gateway.ota.jobs import command
    from schemas import codec, device_key, topics

    dev = fleet.make(1)[0]
    rel = gateway.get(f"/v1/firmware/{fleet.device_type}/1.1.0", headers=auth(fleet.token)).json()
    link = gateway.post(f"/v1/firmware/{fleet.device_type}/1.1.0/links", headers=auth(fleet.token),
                        json={"device_id": dev.device.device_id}).json()
    forged = json.dumps(json.loads(rel["manifest"]) | {"version": "1.0.1"}, sort_keys=True, separators=(",", ":"))
    cmd = command(tenant_id=fleet.tenant.tenant_id, device_id=dev.device.device_id, name="ota.update", ack_timeout_s=30,
                  params={"campaign_id": "forged", "version": "1.0.1", "device_type": fleet.device_type,
                          "url": link["url"], "size": rel["size"], "sha256": rel["sha256"], "manifest": forged,
                          "signature": rel["signature"], "key_id": rel["key_id"], "url_expires_at": int(time.time()) + 60})
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    p.produce(topics.COMMAND_REQUESTS.name, codec("command").encode(cmd),
              device_key(fleet.tenant.tenant_id, dev.device.device_id))
    p.flush(10)
    failed = wait_for(lambda: [r for r in dev.reports if r["status"] == "failed"], timeout=60,
                      what="the device to refuse the forged job")
    assert "signature does not verify" in failed[0]["reason"] and dev.version == "1.0.0"


def test_campaign_survives_a_gateway_restart(fleet, gateway, stack, settings):
    """The operator's campaign keeps its wave and soak position when the gateway (and its driver) restarts:
    the restart falls into the soak after the first wave, and the fresh driver starts the second wave no
    earlier than the soak allows. The campaign's last step (``completed`` after the final soak) is not waited
    out here: it is the same driver code after the restart, and the staged-rollout test above shows it."""
    devices = fleet.make(2)
    c = _create(gateway, fleet, waves=[50, 100], soak_s=SOAK_S)
    first = wait_for(lambda: [j for j in jobs(gateway, fleet.token, c["id"]).values() if j["state"] == "succeeded"],
                     timeout=60, what="the first wave to finish")[0]
    old = next(ch for ch in stack.children if ch.name == "gateway")
    old.stop()
    stopped = dt.datetime.now(dt.UTC)
    fresh = stack.platform_child("gateway")
    fresh.start()
    stack.children[stack.children.index(old)] = fresh
    fresh.wait_until(lambda: _ready(settings), 90, "gateway /readyz after restart")
    second = wait_for(lambda: [j for j in jobs(gateway, fleet.token, c["id"]).values()
                               if j["wave"] == 1 and j["sent_at"]], timeout=60, what="the second wave's job sent")[0]
    sent, first_done = dt.datetime.fromisoformat(second["sent_at"]), dt.datetime.fromisoformat(first["reported_at"])
    # the fresh driver sent it (the restart fell into the soak), and not before the soak was over
    assert first["wave"] == 0 and sent > stopped, (first, second, stopped)
    assert (sent - first_done).total_seconds() >= SOAK_S, (first, second)
    wait_for(lambda: all(j["state"] == "succeeded" for j in jobs(gateway, fleet.token, c["id"]).values()),
             timeout=120, what="the second wave to finish after the restart")
    assert all(d.version == "1.1.0" for d in devices)
    # the last wave soaks too before the campaign completes: not completed the moment its devices are done
    state = campaign_state(gateway, fleet.token, c["id"])
    assert (state["state"], state["current_wave"]) == ("running", 1), state


def _ready(settings) -> bool:
    import httpx

    try:
        return httpx.get(f"http://{settings.host}:{settings.gateway_port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
