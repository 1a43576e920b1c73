"""The device registry as a tenant's integrator uses it: create, read, list with pagination and filters,
update attributes and tags, connection details, CSV import with a per-row report; every change reaches
the compacted registry topic; a first connection event moves a device from provisioned to active."""

from __future__ import annotations

import time

from connectors.uplink import UplinkPublisher
from schemas import topics
from tests.gateway.helpers import bearer, key_registration, new_key_pem, public_pem
from tests.utils.factories import wait_for
from tests.utils.kafka import find_records


def test_create_get_update_and_bad_input(stack, factory, gateway):
    t = factory.tenant("dev")
    h = bearer(t.token(gateway))
    r = gateway.post("/v1/devices", json={"device_id": "boiler-1", "device_type": "boiler", "tags": ["a"],
                                          "attributes": {"fw": "1.0", "floor": 2}}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "provisioned" and r.json()["attributes"] == {"fw": "1.0", "floor": 2}

    r = gateway.post("/v1/devices", json={"device_id": "boiler-1"}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "device_exists"
    r = gateway.post("/v1/devices", json={"device_id": "bad/id"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = gateway.post("/v1/devices", json={"device_id": "x", "tenant_id": "someone-else"}, headers=h)
    assert r.status_code == 422  # the tenant comes from the token; a body that names one is refused

    r = gateway.patch("/v1/devices/boiler-1", json={"attributes": {"fw": "1.1", "floor": None}, "tags": ["b", "c"]},
                      headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["attributes"] == {"fw": "1.1"} and body["tags"] == ["b", "c"] and body["version"] == 1
    # only the single-device read carries the refusal counts (adr/0180)
    assert gateway.get("/v1/devices/boiler-1", headers=h).json() == {**body, "rejections": {}}

    audit = gateway.get("/v1/audit", params={"target": "device:boiler-1"}, headers=h).json()["data"]
    assert [e["action"] for e in audit] == ["device.update", "device.create"]


def test_list_paginates_and_filters(stack, factory, gateway):
    t = factory.tenant("list")
    h = bearer(t.token(gateway))
    for i in range(7):
        r = gateway.post("/v1/devices", json={"device_id": f"m-{i}", "device_type": "meter" if i % 2 else "valve",
                                              "tags": ["even"] if i % 2 == 0 else []}, headers=h)
        assert r.status_code == 201
    assert gateway.post("/v1/devices/m-3/suspend", headers=h).status_code == 200

    seen, cursor = [], None
    while True:
        page = gateway.get("/v1/devices", params={"limit": 3, **({"cursor": cursor} if cursor else {})}, headers=h).json()
        seen += [d["device_id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"m-{i}" for i in range(7)]
    ids = lambda **p: [d["device_id"] for d in gateway.get("/v1/devices", params=p, headers=h).json()["data"]]  # noqa: E731
    assert ids(type="meter") == ["m-1", "m-3", "m-5"]
    assert ids(tag="even") == ["m-0", "m-2", "m-4", "m-6"]
    assert ids(status="suspended") == ["m-3"]
    r = gateway.get("/v1/devices", params={"cursor": "%%%"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_cursor"


def test_connection_details_name_the_devices_own_endpoints(stack, factory, gateway, settings):
    t = factory.tenant("conn")
    h = bearer(t.token(gateway))
    gateway.post("/v1/devices", json={"device_id": "gw-1"}, headers=h)
    c = gateway.get("/v1/devices/gw-1/connection", headers=h).json()
    assert c["mqtt"]["port"] == settings.mqtt_tls_port and c["mqtt"]["client_id"] == f"{t.tenant_id}.gw-1"
    assert c["mqtt"]["topics"]["telemetry"] == f"fs/{t.tenant_id}/gw-1/telemetry"
    assert c["mqtt"]["topics"]["commands"] == f"fs/{t.tenant_id}/gw-1/commands"
    assert c["http"]["ingest_url"].endswith("/v1/ingest")
    assert c["coap"]["url"] == f"coap://{settings.public_host}:{settings.coap_port}/telemetry"


def test_every_change_is_published_to_the_registry_topic(stack, factory, gateway, settings):
    t = factory.tenant("reg")
    h = bearer(t.token(gateway))
    gateway.post("/v1/devices", json={"device_id": "r-1", "tags": ["x"]}, headers=h)
    key = new_key_pem()[0]
    pem = public_pem(key)
    assert gateway.post("/v1/devices/r-1/keys", json=key_registration(key, t.tenant_id, "r-1"),
                        headers=h).status_code == 201
    assert gateway.post("/v1/devices/r-1/suspend", headers=h).status_code == 200
    entries = find_records(settings.bootstrap_servers, topics.REGISTRY.name,
                           lambda e: e["tenant_id"] == t.tenant_id and e["device_id"] == "r-1", count=3, timeout=60)
    assert [e["status"] for e in entries] == ["provisioned", "provisioned", "suspended"]
    assert entries[0]["jwt_public_keys"] == [] and entries[-1]["jwt_public_keys"] == [pem.strip() + "\n"]
    assert entries[-1]["tags"] == ["x"] and entries[-1]["version"] > entries[0]["version"]


def test_first_connection_event_activates_and_tracks_online_state(stack, factory, gateway, settings):
    t = factory.tenant("status")
    h = bearer(t.token(gateway))
    gateway.post("/v1/devices", json={"device_id": "s-1"}, headers=h)
    up = UplinkPublisher(settings.bootstrap_servers, "test")
    try:
        up.device_event(t.tenant_id, "s-1", "CONNECTED")
        up.flush()
        dev = wait_for(lambda: (d := gateway.get("/v1/devices/s-1", headers=h).json())["status"] == "active" and d,
                       timeout=60, what="the device to become active")
        assert dev["online"] is True and dev["last_seen"] is not None
        time.sleep(0.01)
        up.device_event(t.tenant_id, "s-1", "OFFLINE")
        up.flush()
        dev = wait_for(lambda: (d := gateway.get("/v1/devices/s-1", headers=h).json())["online"] is False and d,
                       timeout=60, what="the device to go offline")
        assert dev["status"] == "active"  # going offline does not change the lifecycle
    finally:
        up.close()


def test_csv_import_reports_each_row_and_keeps_the_good_ones(stack, factory, gateway):
    t = factory.tenant("csv")
    h = bearer(t.token(gateway))
    gateway.post("/v1/devices", json={"device_id": "dup-1"}, headers=h)
    csv = ('device_id,device_type,tags,attributes\n'
           'ok-1,meter,a;b,"{""fw"": ""2.0""}"\n'
           'bad id,meter,,\n'
           'dup-1,,,\n'
           'ok-2,,,not-json\n'
           'ok-3,,,\n')
    r = gateway.post("/v1/devices/import", content=csv, headers={**h, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert (rep["created"], rep["failed"]) == (2, 3)
    by_line = {row["line"]: row for row in rep["rows"]}
    assert by_line[2]["status"] == "created" and by_line[6]["status"] == "created"
    assert by_line[3]["code"] == "invalid_row" and by_line[4]["code"] == "device_exists"
    assert by_line[5]["code"] == "invalid_row" and "JSON" in by_line[5]["message"]
    ok1 = gateway.get("/v1/devices/ok-1", headers=h).json()
    assert ok1["tags"] == ["a", "b"] and ok1["attributes"] == {"fw": "2.0"}
    r = gateway.post("/v1/devices/import", content="name\nx\n", headers={**h, "content-type": "text/csv"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_csv"


def test_device_type_profile_gives_new_devices_its_defaults(stack, factory, gateway):
    t = factory.tenant("types")
    h = bearer(t.token(gateway))
    r = gateway.post("/v1/device-types", json={"name": "meter", "default_tags": ["metering"],
                                               "default_attributes": {"sampling_s": 60, "unit": "m3"}}, headers=h)
    assert r.status_code == 201, r.text
    assert gateway.post("/v1/device-types", json={"name": "meter"}, headers=h).json()["error"]["code"] == \
        "device_type_exists"
    r = gateway.post("/v1/devices", json={"device_id": "wm-1", "device_type": "meter", "tags": ["site-a"],
                                          "attributes": {"unit": "l"}}, headers=h)
    body = r.json()
    assert body["tags"] == ["metering", "site-a"] and body["attributes"] == {"sampling_s": 60, "unit": "l"}
    assert [x["name"] for x in gateway.get("/v1/device-types", headers=h).json()["data"]] == ["meter"]
    assert gateway.delete("/v1/device-types/meter", headers=h).status_code == 204
    assert gateway.get("/v1/device-types/meter", headers=h).status_code == 404
    assert gateway.get("/v1/devices/wm-1", headers=h).json()["device_type"] == "meter"  # devices keep theirs
