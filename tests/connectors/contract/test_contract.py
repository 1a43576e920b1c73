"""The connector contract, the same for every protocol connector (issue 16; ``peers.PEERS`` lists the
protocols, each against its real server): admission, dead letters, status, the command contract (adr/0152)
and restart. A protocol that fails one of these does not keep the platform's promises. The ``test_push_*``
tests are the same clauses for the protocols whose devices send (``push_peers.PUSH_PEERS``: MQTT, CoAP, HTTP;
adr/0159); a clause a protocol cannot have is skipped with the fact why."""

from __future__ import annotations

import json
import math
import time

from schemas import device_key, topics
from tests.utils.factories import wait_for
from tests.utils.kafka import records_to_end


def test_admission_registered_devices_land_unknown_and_suspended_ones_are_dead_lettered(harness):
    h = harness
    rec = h.telemetry(lambda r: r["values"].get("level") == 7.0)[0]
    assert rec["protocol"] == h.protocol
    dead = {d["device_id"]: d for d in [
        *h.dead_letters(lambda r: r["device_id"] == "ghost"), *h.dead_letters(lambda r: r["device_id"] == "held")]}
    assert dead["ghost"]["reason_code"] == "unknown_device" and dead["ghost"]["source"] == h.protocol
    assert dead["held"]["reason_code"] == "device_disabled"


def test_a_value_the_platform_cannot_carry_is_dead_lettered_and_the_rest_lands(harness):
    h, since = harness, int(time.time() * 1000)
    try:
        h.peer.set("bad", math.nan)
        dead = h.dead_letters(lambda r: r["device_id"] == "dev-1" and r["time"] >= since
                              and r["reason_code"] == "wrong_type")
        assert dead and "bad" in dead[0]["reason"]
        h.peer.set("level", 8)
        assert h.telemetry(lambda r: r["receive_time"] >= since and r["values"].get("level") == 8.0
                           and "bad" not in r["values"])
    finally:
        h.peer.set("bad", 1.5)
        h.peer.set("level", 7)


def test_status_a_served_device_is_reported_online_by_its_connector(harness):
    ev = harness.event("ONLINE")
    assert ev["source"] == harness.protocol


def test_commands_one_contract_read_back_refusals_with_reasons(harness):
    h = harness
    ok = h.ack(h.command("write", json.dumps({"values": {"setpoint": 12}})))
    assert ok["status"] == "SUCCEEDED", ok
    assert json.loads(ok["result_json"])["holds"] == {"setpoint": 12} and h.peer.get("setpoint") == 12
    no = h.ack(h.command("write", json.dumps({"values": {"setpoint": 12.7}})))
    assert no["status"] == "FAILED" and "not representable" in no["reason"], no
    assert h.peer.get("setpoint") == 12, "a refused value reached the device"
    unknown = h.ack(h.command("explode", "{}"))
    assert unknown["status"] == "FAILED" and "has no command 'explode'" in unknown["reason"]
    assert "set_sp" in unknown["reason"] and "write" in unknown["reason"]
    named = h.ack(h.command("set_sp", json.dumps({"value": -3})))
    assert named["status"] == "SUCCEEDED" and json.loads(named["result_json"])["holds"] == {"setpoint": -3}
    old = h.ack(h.command("write", json.dumps({"setpoint": 5})))
    assert old["status"] == "SUCCEEDED" and json.loads(old["result_json"])["deprecated_params"] is True
    not_writable = h.ack(h.command("write", json.dumps({"values": {"level": 1}})))
    assert not_writable["status"] == "FAILED" and "not a writable" in not_writable["reason"]


def test_a_link_failure_is_retried_by_the_agent_and_status_follows_the_link(harness):
    h = harness
    since = int(time.time() * 1000)
    h.peer.stop()
    try:
        off = h.event("OFFLINE", since=since - 10_000)
        assert off["source"] == h.protocol
        before = h.router.delivered
        first = h.command("write", json.dumps({"values": {"setpoint": 21}}), attempt=1, max_attempts=2)
        wait_for(lambda: h.router.delivered > before, timeout=60, what="attempt 1 handled")
        last = h.command("write", json.dumps({"values": {"setpoint": 22}}), attempt=2, max_attempts=2)
        failed = h.ack(last)  # the last attempt answers, with the link failure as its reason
        assert failed["status"] == "FAILED" and "last attempt (2 of 2)" in failed["reason"], failed
        answered = _answered(h)
        assert last in answered, "the read to the end missed the last attempt's ack"
        assert first not in answered, "attempt 1 of 2 was answered instead of left to the retry"
    finally:
        h.peer.start()
    wait_for(lambda: h.conn.health().healthy, timeout=60, what="link back")
    assert h.event("ONLINE", since=since)["source"] == h.protocol
    ack = h.ack(h.command("write", json.dumps({"values": {"setpoint": 21}}), attempt=2, max_attempts=2,
                          command_id=first))
    assert ack["status"] == "SUCCEEDED", ack
    assert h.peer.get("setpoint") == 21


def test_restart_readings_resume_and_commands_are_delivered(harness):
    h = harness
    h.stop_connector()
    h.peer.set("level", 9)
    since = int(time.time() * 1000)
    h.start_connector()
    assert h.telemetry(lambda r: r["receive_time"] >= since and r["values"].get("level") == 9.0)
    wait_for(lambda: h.conn.health().healthy, timeout=60, what="connector up")
    ack = h.ack(h.command("write", json.dumps({"values": {"setpoint": 4}})))
    assert ack["status"] == "SUCCEEDED" and h.peer.get("setpoint") == 4


def _answered(h) -> set[str]:
    # the command ids dev-1's acks answer, up to the acks topic's end now: the ack of ``last`` (already read)
    # was written after attempt 1 was handled, by the same producer to the same partition (the device's key),
    # so an ack of attempt 1 would be before it; reading to the end proves the absence without a timeout
    return {r["command_id"] for r in records_to_end(h.bootstrap, topics.COMMAND_ACKS.name,
                                                    device_key(h.tenant, "dev-1")) if r is not None}


def test_the_command_agents_retry_carries_a_write_through_a_link_outage(harness):
    """The command agent's own decisions (``streams.commands.CommandDriver``) driving the real connector:
    attempt 1 meets a dead link and is left unanswered, the agent's timeout and backoff emit attempt 2, which
    succeeds once the peer is back; the command ends ``succeeded`` with what the device holds."""
    from streams.commands import CommandDriver, state_key
    from tests.streams.unitkit import MemoryState, encoded

    h, t0 = harness, 1_000_000
    driver = CommandDriver(MemoryState(), lambda *_: h.protocol)
    req = {"tenant_id": h.tenant, "device_id": "dev-1", "command_id": "retry-1", "name": "write",
           "params_json": json.dumps({"values": {"setpoint": 33}}), "created_at": t0, "timeout_ms": 1000,
           "expires_at": None, "attempt": 0, "idempotency_key": None, "protocol": h.protocol, "max_attempts": 3}
    key = state_key(h.tenant, "dev-1", "retry-1")

    def deliveries(emits):
        return [e.record for e in emits if e.topic == topics.COMMANDS.name]

    (first,) = deliveries(driver.on_batch([encoded("command", req, topics.COMMAND_REQUESTS.name)], t0))
    h.peer.stop()
    try:
        wait_for(lambda: not h.conn.health().healthy, timeout=60, what="the connector noticing the outage")
        r1 = h.peer.loop.run(h.conn.deliver_command(first))
        assert not r1.answered and "attempt 1 of 3" in r1.reason, r1
    finally:
        h.peer.start()
    assert deliveries(driver.on_tick(t0 + 1000, {0})) == []  # queued: attempt 1 went unanswered
    (second,) = deliveries(driver.on_tick(t0 + 2000, {0}))  # after the backoff
    assert second["attempt"] == 2
    wait_for(lambda: h.conn.health().healthy, timeout=60, what="link back")
    r2 = h.peer.loop.run(h.conn.deliver_command(second))
    assert r2.ack_status == "SUCCEEDED" and r2.result["holds"] == {"setpoint": 33}, r2
    ack = {"tenant_id": h.tenant, "device_id": "dev-1", "command_id": "retry-1", "status": r2.ack_status,
           "time": t0 + 2100, "result_json": json.dumps(r2.result), "reason": r2.reason}
    driver.on_batch([encoded("command_ack", ack, topics.COMMAND_ACKS.name)], t0 + 2100)
    assert driver.state[key]["status"] == "succeeded" and h.peer.get("setpoint") == 33


# -- the same contract for protocols whose devices send (push_peers: MQTT, CoAP, HTTP) -----------------------
def _cannot(h, clause: str) -> None:
    import pytest

    if clause in h.peer.CANNOT:
        pytest.skip(f"{h.protocol}: {h.peer.CANNOT[clause]}")


def _body(*readings: dict) -> bytes:
    return json.dumps(list(readings) if len(readings) > 1 else readings[0]).encode()


def test_push_admission_registered_devices_land_unknown_and_suspended_ones_are_refused(push):
    """The verdict for a device the platform cannot identify is told at the door (no tenant to file a dead
    letter under); a known, refused device is told and, where the connector sees the message, dead-lettered."""
    h, marker = push, float(int(time.time()) % 100_000)
    for device in ("ghost", "held"):
        code, filed = h.peer.REFUSALS[device]
        answer = h.peer.send(device, _body({"values": {"level": marker}}))
        assert not answer.ok and answer.code == code, (device, answer)
        if filed:
            dead = h.dead_letters(lambda r, d=device, c=code: r["device_id"] == d and r["reason_code"] == c)
            assert dead and dead[0]["source"] == h.protocol
    # dev-1's reading, sent after the refused ones through the same connector, lands: anything of ``held``'s
    # that got through would have been written before it, so reading to the end proves there is none
    assert h.peer.send("dev-1", _body({"values": {"level": marker}})).ok
    rec = h.telemetry(lambda r: r["values"].get("level") == marker)[0]
    assert rec["protocol"] == h.protocol
    assert not records_to_end(h.bootstrap, topics.TELEMETRY_RAW.name, device_key(h.tenant, "held"))


def test_push_a_value_the_platform_cannot_carry_is_dead_lettered_and_the_rest_lands(push):
    h, since, marker = push, int(time.time() * 1000), float(time.time_ns() % 1_000_000)
    assert h.peer.send("dev-1", _body({"values": {"level": marker}}, {"values": {"bad": None}})).ok
    dead = h.dead_letters(lambda r: r["device_id"] == "dev-1" and r["time"] >= since
                          and r["reason_code"] == "wrong_type")
    assert dead and "bad" in dead[0]["reason"] and dead[0]["source"] == h.protocol
    assert h.telemetry(lambda r: r["values"].get("level") == marker and "bad" not in r["values"])


def test_push_status_follows_the_devices_link(push):
    h = push
    _cannot(h, "status")
    since = int(time.time() * 1000)
    h.peer.announce_online()
    assert h.event("ONLINE", since=since)["source"] == h.protocol
    h.peer.go_offline()
    assert h.event("OFFLINE", since=since)["source"] == h.protocol
    # from just before the device comes back: a lookback reaches the status agent's own ONLINE (source
    # ``streams``) for the device's first reading once the tests before it run quicker than the lookback
    back = int(time.time() * 1000)
    h.peer.come_back()
    assert h.event("ONLINE", since=back)["source"] == h.protocol


def test_push_commands_are_sent_and_completed_by_the_devices_answer(push):
    """Push protocols pass a command through to the device (the connector answers SENT): the device holds
    its command names and types, and its own answer completes the command (adr/0122, adr/0152)."""
    h = push
    _cannot(h, "commands")
    cid = h.command("write", json.dumps({"values": {"setpoint": 12}}))
    assert h.acks(cid, "SENT")
    done = h.acks(cid, "SUCCEEDED")[0]
    assert json.loads(done["result_json"]) == {"holds": {"setpoint": 12}} and done["device_id"] == "dev-1"
    assert any(c["command_id"] == cid and c["params"] == {"values": {"setpoint": 12}} for c in h.peer.commands)
    refused = h.command("explode", "{}")
    failed = h.acks(refused, "FAILED")[0]
    assert "only write" in failed["reason"]


def test_push_restart_readings_resume_and_commands_are_delivered(push):
    h = push
    h.peer.stop_connector()
    marker = float(time.time_ns() % 1_000_000) + 0.5
    queued = h.protocol == "mqtt"  # the broker keeps a QoS 1 reading in the connector's session meanwhile
    if queued:
        assert h.peer.send("dev-1", _body({"values": {"level": marker}})).ok
    h.peer.start_connector()
    if not queued:
        assert h.peer.send("dev-1", _body({"values": {"level": marker}})).ok
    if queued:  # written by the restarted connector from its resumed session (the stack's may write it too)
        def by_restarted(found):
            return any(hd.get("fs-instance", b"").decode() == h.peer.client_id for _r, hd in found)
        assert by_restarted(h.telemetry(lambda r: r["values"].get("level") == marker, headers=True,
                                        until=by_restarted, timeout=90))
    else:
        assert h.telemetry(lambda r: r["values"].get("level") == marker)
    if "commands" not in h.peer.CANNOT:
        cid = h.command("write", json.dumps({"values": {"setpoint": 4}}))
        assert json.loads(h.acks(cid, "SUCCEEDED")[0]["result_json"]) == {"holds": {"setpoint": 4}}
