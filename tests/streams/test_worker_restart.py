"""A streams worker killed with ``kill -9`` and restarted, as the operator relies on it: no shadow version
is lost (If-Match on the last version still succeeds), a command in the middle of its retries carries on
to its final state, and a rule that was active does not raise its alert a second time.

This test kills the session's own streams worker and starts a fresh one in its place (the platform's
supervisor would do the same), so it runs last in this package."""

from __future__ import annotations

import os
import signal

from fleetstream.stack.process import Child, port_open
from schemas import topics
from tests.streams.rulekit import RuleKit, now_ms
from tests.utils.factories import wait_for
from tests.utils.kafka import records_to_end


def _restart_streams_hard(stack) -> None:
    i, old = next((i, c) for i, c in enumerate(stack.children) if c.name == "streams")
    os.killpg(old.proc.pid, signal.SIGKILL)
    old.proc.wait(10)
    fresh = Child(old.name, old.argv, old.log, env=old.env)
    fresh.start()
    stack.children[i] = fresh
    s = stack.s
    fresh.wait_until(lambda: port_open(s.host, s.streams_web_port), 90, "restarted streams worker web port")


def test_kill_9_loses_no_shadow_version_no_command_and_duplicates_no_alert(stack, factory, gateway, settings):
    t = factory.tenant("restart")
    kit = RuleKit(settings, gateway, t)
    dev = factory.device(t).device_id
    h = kit.h

    for i in range(3):
        r = gateway.patch(f"/v1/devices/{dev}/shadow/desired", headers=h, json={"step": i})
        assert r.status_code == 200 and r.json()["version"] == i + 1

    cid = gateway.post(f"/v1/devices/{dev}/commands", headers=h,
                       json={"name": "calibrate", "timeout_s": 3, "max_attempts": 3}).json()["command_id"]

    rid = kit.rule({"type": "threshold", "metric": "temperature", "op": ">", "value": 80})
    t0 = now_ms() - 30_000
    kit.send(dev, t0, {"temperature": 90.0})
    assert [a["state"] for a in kit.alerts(rid, count=1)] == ["ACTIVE"]

    _restart_streams_hard(stack)
    kit.send(dev, t0 + 1000, {"temperature": 95.0})  # still above: must not raise a second alert

    # shadow: version 3 survived, so a write conditional on it succeeds and makes version 4
    r = wait_for(lambda: (x := gateway.patch(f"/v1/devices/{dev}/shadow/desired", headers={**h, "If-Match": "3"},
                                              json={"step": 3}, timeout=30)).status_code != 504 and x,
                 timeout=120,
                 what="the restarted shadow agent to answer")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 4 and r.json()["desired"] == {"step": 3}

    # command: the retries went on after the restart and the command reached its final state
    done = wait_for(lambda: (c := gateway.get(f"/v1/devices/{dev}/commands/{cid}", headers=h).json())["status"]
                    in ("timed_out", "succeeded", "failed", "expired") and c, timeout=90, what="the command to finish")
    assert done["status"] == "timed_out" and done["attempt"] == 3
    assert [s for s, _ in done["history"]].count("sent") == 3

    # the alert: cleared once the reading drops, and only ever one activation
    kit.send(dev, t0 + 2000, {"temperature": 50.0})
    alerts = kit.alerts(rid, count=2, timeout=60)
    assert [(a["state"], a["time"]) for a in alerts] == [("ACTIVE", t0), ("CLEARED", t0 + 2000)]
    # every alert the rule raised before its CLEARED is on the topic by now (one producer, one key, in order):
    # read to the end rather than wait out a timeout for a third (adr/0202)
    more = [a for a in records_to_end(settings.bootstrap_servers, topics.ALERTS.name) if a and a["rule_id"] == rid]
    assert len({a["alert_id"] for a in more}) == 1 and [a["state"] for a in more].count("ACTIVE") == 1
    listed = gateway.get("/v1/alerts", headers=h, params={"rule_id": rid}).json()
    assert listed["count"] == 1 and listed["data"][0]["state"] == "CLEARED"
