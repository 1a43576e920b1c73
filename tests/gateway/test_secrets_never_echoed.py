"""Write-only fields (issue 20): a rule's webhook secret is stored and reaches the rules agent, but no answer
of the API ever carries it back (create, replace, read, list, versions, enable/disable, GraphQL), while the
agent still signs with it."""

from __future__ import annotations

import json

from tests.streams.rulekit import RuleKit

HOT = {"type": "threshold", "metric": "temperature", "op": ">", "value": 80}
SECRET = "do-not-echo-" + "x" * 20


def _hook(secret: str = SECRET) -> dict:
    # 127.0.0.2 is the tests' allowed webhook address (tests/conftest.py, adr/0110)
    return {"type": "webhook", "url": "http://127.0.0.2:9/hook", "secret": secret}


def test_a_rules_webhook_secret_is_written_but_never_answered(stack, factory, gateway, settings):
    t = factory.tenant("secrets")
    kit = RuleKit(settings, gateway, t)
    answers = []
    r = gateway.post("/v1/rules", headers=kit.h,
                     json={"name": "hot", "condition": HOT, "actions": [{"type": "alert"}, _hook()]})
    assert r.status_code == 201, r.text
    answers.append(r)
    rid = r.json()["rule_id"]
    hook = r.json()["document"]["actions"][1]
    assert "secret" not in hook and hook["secret_set"] is True and hook["url"] == _hook()["url"]
    # a replace sends the secret again (write-only): a redacted document read back is not accepted as is
    again = gateway.put(f"/v1/rules/{rid}", headers={**kit.h, "If-Match": "1"}, json=r.json()["document"])
    assert again.status_code == 422, again.text
    answers.append(again)
    r = gateway.put(f"/v1/rules/{rid}", headers={**kit.h, "If-Match": "1"},
                    json={"name": "hotter", "condition": HOT, "actions": [_hook(SECRET + "-2")]})
    assert r.status_code == 200, r.text
    answers += [r, gateway.post(f"/v1/rules/{rid}/disable", headers=kit.h),
                gateway.post(f"/v1/rules/{rid}/enable", headers=kit.h),
                gateway.get(f"/v1/rules/{rid}", headers=kit.h), gateway.get("/v1/rules", headers=kit.h),
                gateway.get(f"/v1/rules/{rid}/versions", headers=kit.h),
                gateway.post("/graphql", headers=kit.h, json={"query": "{ __typename }"})]
    for a in answers:
        assert SECRET not in a.text, (a.request.method, a.request.url, a.text)
    versions = answers[-2].json()["data"]
    assert [v["document"]["actions"][-1]["secret_set"] for v in versions] == [True] * 4
    kit.wait_rule(rid, 4)  # and the rules agent holds the current version


def test_the_record_for_the_rules_agent_keeps_the_secret_it_signs_with():
    from gateway.api.routes.rules import redacted, rule_record

    doc = {"name": "hot", "condition": HOT, "actions": [{"type": "alert"}, _hook()]}
    row = {"tenant_id": "t", "rule_id": "r", "version": 1, "enabled": True, "document": doc}
    from schemas import codec

    entry = codec("rule_entry").decode(rule_record(row))  # the rules topic's record (adr/0140)
    assert json.loads(entry["document_json"])["actions"][1]["secret"] == SECRET
    shown = redacted(doc)
    assert SECRET not in json.dumps(shown) and shown["actions"][1]["secret_set"] is True
    assert doc["actions"][1]["secret"] == SECRET  # the stored document is not changed by showing it
    assert redacted({"name": "no actions"}) == {"name": "no actions"}
