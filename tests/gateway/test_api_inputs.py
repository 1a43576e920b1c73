"""Each input that was a 500 in the issue-19 schemathesis run now gets a 4xx in the JSON error format with a
reason (adr/0109), and a 10 MB body is refused with 413 before anything is written. Raw JSON text is sent,
so NUL and unpaired surrogates arrive exactly as a client would write them (``\\u0000``, ``\\ud800``)."""

from __future__ import annotations

import json

import pytest

JSON = {"content-type": "application/json"}
NUL, LONE = "\\u0000", "\\ud800"  # as they appear in JSON text
ALERT = '"actions": [{"type": "alert"}]'


@pytest.fixture(scope="module")
def api(stack, factory, gateway):
    t = factory.tenant("inputs")
    h = {"Authorization": f"Bearer {t.token(gateway)}"}
    assert gateway.post("/v1/devices", headers=h, json={"device_id": "d1"}).status_code == 201
    return gateway, h


def _refused(r, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["code"] and all(w in err["message"] for w in words), err
    return err


@pytest.mark.parametrize("bad", [NUL, LONE], ids=["nul", "unpaired-surrogate"])
@pytest.mark.parametrize("method, path, body, field", [
    ("PATCH", "/v1/devices/d1", '{"tags": ["a%s"]}', "tags"),
    ("PATCH", "/v1/devices/d1", '{"attributes": {"k": "v%s"}}', "attributes"),
    ("PATCH", "/v1/devices/d1", '{"attributes": {"k%s": 1}}', "attributes"),
    ("POST", "/v1/device-types", '{"name": "t1", "default_tags": ["x%s"]}', "default_tags"),
    ("POST", "/v1/device-types", '{"name": "t1", "default_attributes": {"a": ["x%s"]}}', "default_attributes"),
    ("POST", "/v1/devices/bulk", '{"devices": [{"device_id": "b1", "attributes": {"a": "%s"}}]}', "attributes"),
    ("POST", "/v1/rules", '{"name": "r%s", "condition": {"type": "inactivity", "for_s": 60}, ' + ALERT + '}', "name"),
    ("POST", "/v1/devices/d1/commands", '{"name": "reboot", "params": {"why": "%s"}}', "params"),
    ("PATCH", "/v1/devices/d1/shadow/desired", '{"mode": "%s"}', "body"),
])
def test_nul_and_unpaired_surrogates_in_json_get_422_naming_the_field(api, method, path, body, field, bad):
    gateway, h = api
    r = gateway.request(method, path, headers={**h, **JSON}, content=(body % bad).encode())
    _refused(r, 422, field)


@pytest.mark.parametrize("query", ["tag=a%00", "type=m%00", "tag=x&type=a%00b"])
def test_nul_in_list_filters_gets_400(api, query):
    gateway, h = api
    _refused(gateway.get(f"/v1/devices?{query}", headers=h), 400, "NUL")


def test_a_telemetry_time_outside_what_storage_holds_gets_400(api):
    gateway, h = api
    for to in ("0074-07-07T11:55:57.4-08:23", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59Z"):
        r = gateway.get("/v1/devices/d1/telemetry", headers=h, params={"metric": "x", "to": to})
        _refused(r, 400, "'to' must lie between")
    r = gateway.get("/v1/devices/d1/telemetry", headers=h, params={"metric": "x", "from": "1900-01-01T00:00:00Z",
                                                                   "interval": "1h"})
    _refused(r, 400, "'from'")
    assert gateway.get("/v1/devices/d1/telemetry", headers=h, params={"metric": "x"}).status_code == 200


@pytest.mark.parametrize("condition, field", [
    ('{"type": "rate", "metric": "x", "value": 2.98e+234}', "value"),
    ('{"type": "geofence", "polygon": [[1.8e+308, -1.8e+308], [0, 0], [1, 1]]}', "polygon"),
    ('{"type": "geofence", "polygon": [[91, 0], [0, 0], [1, 1]]}', "polygon"),
    ('{"type": "threshold", "metric": "x", "op": ">", "value": NaN}', "value"),
    ('{"type": "range", "metric": "x", "min": -Infinity, "max": 1}', "min"),
    ('{"type": "geofence", "center": [0, 0], "radius_m": 1e300}', "radius_m"),
])
def test_extreme_numbers_in_rule_conditions_get_422(api, condition, field):
    gateway, h = api
    body = '{"name": "r", "condition": ' + condition + ", " + ALERT + "}"
    for path in ("/v1/rules", "/v1/rules/dry-run"):
        payload = body if path == "/v1/rules" else '{"device_id": "d1", "rule": ' + body + "}"
        _refused(gateway.post(path, headers={**h, **JSON}, content=payload.encode()), 422, field)


def test_nan_and_oversized_numbers_in_attributes_get_422(api):
    gateway, h = api
    for value in ("NaN", "Infinity", "1e400", "1" * 400):
        r = gateway.patch("/v1/devices/d1", headers={**h, **JSON}, content=f'{{"attributes": {{"n": {value}}}}}')
        _refused(r, 422, "attributes")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_10_mb_device_is_refused_with_413_and_not_created(api, chunked):
    gateway, h = api
    device_id = f"big-{int(chunked)}"
    body = ('{"device_id": "' + device_id + '", "attributes": {"x": "' + "a" * 10_000_000 + '"}}').encode()
    content = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    r = gateway.post("/v1/devices", headers={**h, **JSON}, content=content)
    _refused(r, 413, "1048576")
    assert gateway.get(f"/v1/devices/{device_id}", headers=h).status_code == 404
    # a body to a route that never reads it: refused too, and the device is not suspended
    r = gateway.post("/v1/devices/d1/suspend", headers=h, content=(b"x" * 65536 for _ in range(32)))
    _refused(r, 413, "1048576")
    assert gateway.get("/v1/devices/d1", headers=h).json()["status"] != "suspended"


def test_large_attributes_within_the_body_limit_are_refused_before_kafka(api):
    gateway, h = api
    r = gateway.post("/v1/devices", headers=h, json={"device_id": "fat", "attributes": {"x": "a" * 70_000}})
    _refused(r, 422, "65536")
    assert gateway.get("/v1/devices/fat", headers=h).status_code == 404


@pytest.mark.parametrize("bad", ["a\x00", "a\ud800"], ids=["nul", "unpaired-surrogate"])
def test_graphql_arguments_follow_the_same_text_rule(api, bad):
    gateway, h = api
    body = json.dumps({"query": "query($t: String) { devices(tag: $t) { id } }", "variables": {"t": bad}})
    r = gateway.post("/graphql", headers={**h, **JSON}, content=body.encode())
    assert r.status_code == 200, r.text
    [error] = r.json()["errors"]
    assert error["extensions"]["code"] == "invalid_request" and "tag" in error["message"], error


def test_csv_import_rows_follow_the_same_rules_and_a_bad_row_is_reported_not_a_500(api):
    gateway, h = api
    csv = ('device_id,device_type,tags,attributes\n'
           'csv-1,meter,a\x00b,\n'
           'csv-2,meter,ok,"{""k"": ""\\u0000""}"\n'
           'csv-3,meter,ok,"{""k"": NaN}"\n'
           'csv-4,meter,site-a;floor-2,"{""k"": 1}"\n')
    r = gateway.post("/v1/devices/import", headers={**h, "content-type": "text/csv"}, content=csv.encode())
    assert r.status_code == 200, r.text
    report = {row["device_id"]: row for row in r.json()["rows"]}
    for bad, field in (("csv-1", "tags"), ("csv-2", "attributes"), ("csv-3", "attributes")):
        assert report[bad]["status"] == "error" and field in report[bad]["message"], report[bad]
    assert report["csv-4"]["status"] == "created" and r.json()["created"] == 1
