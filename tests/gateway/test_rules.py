"""Rules as a tenant manages them through /v1/rules: documents are validated (no code, clear errors),
versioned, enabled and disabled, guarded by If-Match, invisible to other tenants, and can be dry-run
against the device's recent telemetry before they are saved."""

from __future__ import annotations

from tests.streams.rulekit import RuleKit, now_ms
from tests.utils.factories import wait_for

HOT = {"type": "threshold", "metric": "temperature", "op": ">", "value": 80}


def test_rule_lifecycle_versions_and_isolation(stack, factory, gateway, settings):
    t, other = factory.tenant("ruleapi"), factory.tenant("ruleother")
    kit = RuleKit(settings, gateway, t)
    r = gateway.post("/v1/rules", headers=kit.h, json={"name": "hot", "condition": HOT, "actions": [{"type": "alert"}]})
    assert r.status_code == 201
    rule = r.json()
    assert rule["version"] == 1 and rule["enabled"] and rule["document"]["condition"]["metric"] == "temperature"
    rid = rule["rule_id"]

    r = gateway.put(f"/v1/rules/{rid}", headers={**kit.h, "If-Match": "1"},
                    json={"name": "hotter", "condition": {**HOT, "value": 90}, "actions": [{"type": "alert"}]})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = gateway.put(f"/v1/rules/{rid}", headers={**kit.h, "If-Match": "1"},
                    json={"name": "stale", "condition": HOT, "actions": [{"type": "alert"}]})
    assert r.status_code == 412 and r.json()["error"]["code"] == "version_mismatch"
    assert gateway.post(f"/v1/rules/{rid}/disable", headers=kit.h).json()["enabled"] is False
    versions = gateway.get(f"/v1/rules/{rid}/versions", headers=kit.h).json()
    assert [(v["version"], v["enabled"], v["document"]["name"]) for v in versions["data"]] == [
        (1, True, "hot"), (2, True, "hotter"), (3, False, "hotter")]
    assert gateway.post(f"/v1/rules/{rid}/enable", headers=kit.h).json()["version"] == 4
    kit.wait_rule(rid, 4)  # distributed to the streams worker

    oh = {"Authorization": f"Bearer {other.token(gateway)}"}
    assert gateway.get(f"/v1/rules/{rid}", headers=oh).status_code == 404
    assert gateway.get("/v1/rules", headers=oh).json()["count"] == 0
    assert gateway.delete(f"/v1/rules/{rid}", headers=oh).status_code == 404
    assert gateway.delete(f"/v1/rules/{rid}", headers=kit.h).status_code == 204
    assert gateway.get(f"/v1/rules/{rid}", headers=kit.h).status_code == 404


def test_invalid_rules_are_refused_with_the_field_named(stack, factory, gateway, settings):
    t = factory.tenant("rulebad")
    h = {"Authorization": f"Bearer {t.token(gateway)}"}
    cases = [
        ({"name": "x", "condition": {"type": "python", "code": "__import__('os')"}, "actions": [{"type": "alert"}]},
         "condition"),
        ({"name": "x", "condition": {**HOT, "op": "=~"}, "actions": [{"type": "alert"}]}, "op"),
        ({"name": "x", "condition": {"type": "range", "metric": "p", "min": 5, "max": 1}, "actions": [{"type": "alert"}]},
         "min must not exceed max"),
        ({"name": "x", "condition": HOT, "actions": []}, "actions"),
        ({"name": "x", "condition": {"type": "all", "conditions": [{"type": "inactivity", "for_s": 5}]},
          "actions": [{"type": "alert"}]}, "inactivity"),
        ({"name": "x", "condition": HOT, "actions": [{"type": "webhook", "url": "not a url", "secret": "s" * 16}]}, "url"),
    ]
    for body, expect in cases:
        r = gateway.post("/v1/rules", headers=h, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_request" and expect in r.json()["error"]["message"], r.text
    assert gateway.post("/v1/rules", headers={"Authorization": f"Bearer {t.token(gateway, 'devices:read')}"},
                        json={"name": "x", "condition": HOT, "actions": [{"type": "alert"}]}).status_code == 403


def test_dry_run_replays_recent_telemetry_without_saving(stack, factory, gateway, settings):
    t = factory.tenant("ruledry")
    kit = RuleKit(settings, gateway, t)
    dev = factory.device(t).device_id
    t0 = now_ms() - 120_000
    for i, v in enumerate([70.0, 85.0, 90.0, 60.0]):
        kit.send(dev, t0 + i * 1000, {"temperature": v})
    telemetry = f"/v1/devices/{dev}/telemetry"
    wait_for(lambda: len(gateway.get(telemetry, headers=kit.h, params={"metric": "temperature"}).json()["points"]) == 4,
             timeout=60, what="the readings to be stored")
    body = {"rule": {"name": "hot", "condition": HOT, "actions": [{"type": "alert"}]}, "device_id": dev, "hours": 1}
    r = gateway.post("/v1/rules/dry-run", headers=kit.h, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["readings"] == 4 and out["in_scope"]
    assert [(x["event"], x["ts"]) for x in out["transitions"]] == [("fire", t0 + 1000), ("clear", t0 + 3000)]
    assert gateway.get("/v1/rules", headers=kit.h).json()["count"] == 0
    assert gateway.post("/v1/rules/dry-run", headers=kit.h, json={**body, "device_id": "nope"}).status_code == 404
