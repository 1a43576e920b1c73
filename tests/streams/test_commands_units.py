"""The command agent's decisions without a broker (``streams.commands.CommandDriver``, adr/0052, 0123):
requests delivered once, acknowledgements moving a command forward only, retries after backoff up to
``max_attempts``, timeouts, expiry, and pending commands found again after a rebalance."""

from __future__ import annotations

from schemas import topics
from streams.commands import CommandDriver, state_key
from tests.streams.unitkit import MemoryState, check_encodes, encoded

T0 = 1_000_000
KEY = state_key("t", "d", "c1")
TYPES = {topics.COMMANDS.name: "command", topics.COMMAND_STATES.name: "command_state"}


def request(*, command_id: str = "c1", protocol: str | None = "mqtt", timeout_ms: int = 1000,
            expires_at: int | None = None, max_attempts: int = 3, partition: int = 0):
    return encoded("command", {"tenant_id": "t", "device_id": "d", "command_id": command_id, "name": "reboot",
                               "params_json": "{}", "created_at": T0, "timeout_ms": timeout_ms,
                               "expires_at": expires_at, "attempt": 0, "idempotency_key": None,
                               "protocol": protocol, "max_attempts": max_attempts},
                   topics.COMMAND_REQUESTS.name, partition=partition)


def ack(status: str, *, command_id: str = "c1", result: str | None = None):
    return encoded("command_ack", {"tenant_id": "t", "device_id": "d", "command_id": command_id, "status": status,
                                   "time": T0, "result_json": result, "reason": None}, topics.COMMAND_ACKS.name)


def driver(protocols: dict | None = None) -> tuple[CommandDriver, MemoryState, list]:
    state, asked = MemoryState(), []

    def protocol_of(tenant, device):
        asked.append((tenant, device))
        return (protocols or {}).get(device)

    return CommandDriver(state, protocol_of), state, asked


def sent(emits) -> list[tuple[str, object]]:
    """(``deliver``, attempt) for a delivery, (``state``, status) for a state record, in order."""
    check_encodes(emits, TYPES)
    return [("deliver", e.record["attempt"]) if e.topic == topics.COMMANDS.name else ("state", e.record["status"])
            for e in emits]


def test_a_request_is_delivered_at_once_and_a_repeat_changes_nothing():
    dr, state, _ = driver()
    out = dr.on_batch([request()], T0)
    assert sent(out) == [("deliver", 1), ("state", "sent")]
    assert out[0].key == b"t:d" and out[1].key == KEY, "delivered by device, state by command"
    assert state[KEY]["due"] == T0 + 1000 and state.writes == [(0, KEY)]
    assert dr.on_batch([request()], T0 + 5) == [], "the same command id again"


def test_a_command_without_protocol_takes_the_registrys():
    dr, state, asked = driver({"d": "modbus"})
    dr.on_batch([request(protocol=None)], T0)
    assert asked == [("t", "d")] and state[KEY]["protocol"] == "modbus"
    dr.on_batch([request(command_id="c2", protocol="coap")], T0)
    assert asked == [("t", "d")], "a command naming its protocol does not ask"


def test_acknowledgements_move_forward_only_and_late_ones_are_ignored():
    dr, state, _ = driver()
    dr.on_batch([request()], T0)
    assert sent(dr.on_batch([ack("ACKNOWLEDGED")], T0 + 10)) == [("state", "acknowledged")]
    assert state[KEY]["due"] == T0 + 1010, "the result is owed within one more timeout"
    assert dr.on_batch([ack("SENT")], T0 + 20) == [], "backwards"
    out = dr.on_batch([ack("SUCCEEDED", result='{"ok": true}')], T0 + 30)
    assert sent(out) == [("state", "succeeded")] and out[0].record["result_json"] == '{"ok": true}'
    assert dr.on_batch([ack("FAILED")], T0 + 40) == [], "final"
    assert dr.on_batch([ack("SUCCEEDED", command_id="unknown")], T0) == []
    assert KEY not in dr.pending


def test_unanswered_attempts_are_retried_after_backoff_then_time_out():
    dr, state, _ = driver()
    dr.on_batch([request(max_attempts=2)], T0)
    assert dr.on_tick(T0 + 999, {0}) == []
    assert sent(dr.on_tick(T0 + 1000, {0})) == [("state", "queued")]
    assert state[KEY]["reason"] == "attempt 1 not acknowledged; retrying" and state[KEY]["due"] == T0 + 2000
    assert dr.on_tick(T0 + 1999, {0}) == []
    assert sent(dr.on_tick(T0 + 2000, {0})) == [("deliver", 2), ("state", "sent")]
    out = dr.on_tick(T0 + 3000, {0})
    assert sent(out) == [("state", "timed_out")]
    assert out[0].record["reason"] == "no acknowledgement after 2 attempt(s)"
    assert KEY not in dr.pending and dr.on_tick(T0 + 99_000, {0}) == []
    assert [s for s, _ in state[KEY]["history"]] == ["queued", "sent", "queued", "sent", "timed_out"]


def test_acknowledged_without_a_result_times_out():
    dr, _, _ = driver()
    dr.on_batch([request()], T0)
    dr.on_batch([ack("ACKNOWLEDGED")], T0 + 10)
    assert dr.on_tick(T0 + 1009, {0}) == []
    assert sent(dr.on_tick(T0 + 1010, {0})) == [("state", "timed_out")]


def test_a_command_expires_when_its_ttl_passes_before_an_acknowledgement():
    dr, state, _ = driver()
    dr.on_batch([request(expires_at=T0 + 500)], T0)
    assert state[KEY]["due"] == T0 + 500, "the TTL cuts the wait short"
    assert sent(dr.on_tick(T0 + 500, {0})) == [("state", "expired")]
    assert dr.on_batch([ack("SUCCEEDED")], T0 + 600) == []


def test_ticks_act_on_owned_partitions_and_find_pending_commands_after_a_rebalance():
    dr, state, _ = driver()
    dr.on_batch([request(partition=4)], T0)
    assert dr.on_tick(T0 + 1000, {0}) == [], "partition 4 is another worker's now"
    # the worker that receives partition 4 recovers the table and starts with no pending set of its own
    successor = CommandDriver(state, lambda t, d: None)
    assert successor.pending == set()
    assert sent(successor.on_tick(T0 + 1000, {4})) == [("state", "queued")]
    assert successor.pending == {KEY} and state.writes[-1] == (4, KEY), "written to the command's partition"


def test_undecodable_records_are_skipped():
    dr, state, _ = driver()
    bad = request()._replace(value=b"junk")
    assert dr.on_batch([bad, ack("SUCCEEDED")._replace(value=b"junk")], T0) == []
    assert dict(state) == {}
