"""Command agent: drives each command from request to a final state (adr/0052).

Input: ``fleetstream.command-requests`` (from the API) and ``fleetstream.command-acks`` (from devices via
the MQTT downlink, or from protocol connectors). Output: delivery attempts on ``fleetstream.commands``
(each connector delivers the ones of its protocol) and the command's state on the compacted
``fleetstream.command-states`` (what the gateway serves).

Lifecycle: queued → sent → acknowledged → succeeded | failed, or timed_out (no answer after the last
attempt) / expired (TTL passed before an answer). An attempt not acknowledged within ``timeout_ms`` is
retried after an exponential backoff, up to ``max_attempts`` deliveries. State lives in a Faust table
with a changelog, keyed ``tenant:device:command_id`` on the device's partition: a restarted worker resumes
every pending command, and a repeated request (same id: the API derives it from the idempotency key)
changes nothing.

The decisions are ``CommandDriver``'s (records, state and clock in, records to send out);
``register()`` wires it to Faust (adr/0123).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence

import faust

from schemas import ValueDeserializationError, codec, device_key, topics

from .registry import RegistryView
from .tables import owned_partitions
from .units import Emit, Message, Outbox, State, TableState

log = logging.getLogger(__name__)

FINAL = frozenset({"succeeded", "failed", "timed_out", "expired"})
BACKOFF_BASE_MS = 1000
BACKOFF_MAX_MS = 60_000
TICK_S = 0.25
REQUESTS, ACKS = topics.COMMAND_REQUESTS.name, topics.COMMAND_ACKS.name
DELIVERIES, STATES = topics.COMMANDS.name, topics.COMMAND_STATES.name
ACK_STATUS = {"SENT": "sent", "ACKNOWLEDGED": "acknowledged", "SUCCEEDED": "succeeded", "FAILED": "failed"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def backoff_ms(attempt: int) -> int:
    """Wait before delivery ``attempt + 1`` after ``attempt`` went unanswered: 1 s, 2 s, 4 s, … ≤ 60 s."""
    return min(BACKOFF_BASE_MS * 2 ** max(attempt - 1, 0), BACKOFF_MAX_MS)


def new_state(req: dict, partition: int, now: int) -> dict:
    return {"t": req["tenant_id"], "d": req["device_id"], "id": req["command_id"], "name": req["name"],
            "params": req["params_json"], "status": "queued", "attempt": 0,
            "max": max(1, req.get("max_attempts") or 1), "created": req["created_at"], "updated": now,
            "timeout": req["timeout_ms"], "expires": req["expires_at"], "idem": req["idempotency_key"],
            "protocol": req["protocol"], "result": None, "reason": None, "due": now, "p": partition,
            "history": [["queued", now]]}


def transition(st: dict, status: str, now: int, *, reason: str | None = None, result: str | None = None) -> None:
    st["status"], st["updated"] = status, now
    if reason is not None:
        st["reason"] = reason
    if result is not None:
        st["result"] = result
    st["history"].append([status, now])


def apply_ack(st: dict, ack: dict, now: int) -> bool:
    """Applies a device's answer; returns whether the state changed. Late answers to a final command and
    answers that would move it backwards are ignored."""
    status = ACK_STATUS[ack["status"]]
    if st["status"] in FINAL:
        return False
    order = ("queued", "sent", "acknowledged", "succeeded")
    if status in order and st["status"] in order and order.index(status) <= order.index(st["status"]):
        return False
    transition(st, status, now, reason=ack.get("reason"), result=ack.get("result_json"))
    if status == "acknowledged":
        st["due"] = now + st["timeout"]  # the device owes a result within one more timeout
    return True


def on_tick(st: dict, now: int) -> str | None:
    """Time-driven step of one non-final command: returns "deliver" when an attempt must be sent, or None.
    Mutates ``st`` (status, attempt, due) as the lifecycle requires."""
    if st["status"] in FINAL or now < st["due"]:
        return None
    if st["expires"] is not None and now >= st["expires"] and st["status"] in ("queued", "sent"):
        transition(st, "expired", now, reason="its time to live passed before the device acknowledged it")
        return None
    if st["status"] == "acknowledged":
        transition(st, "timed_out", now, reason="acknowledged but no result within the timeout")
        return None
    if st["status"] == "queued":  # first delivery, or a retry whose backoff elapsed
        st["attempt"] += 1
        transition(st, "sent", now)
        st["due"] = now + st["timeout"] if st["expires"] is None else min(now + st["timeout"], st["expires"])
        return "deliver"
    # sent and not acknowledged within the timeout
    if st["attempt"] >= st["max"]:
        transition(st, "timed_out", now, reason=f"no acknowledgement after {st['attempt']} attempt(s)")
        return None
    transition(st, "queued", now, reason=f"attempt {st['attempt']} not acknowledged; retrying")
    st["due"] = now + backoff_ms(st["attempt"])
    if st["expires"] is not None:
        st["due"] = min(st["due"], st["expires"])
    return None


def to_command(st: dict) -> dict:
    return {"tenant_id": st["t"], "device_id": st["d"], "command_id": st["id"], "name": st["name"],
            "params_json": st["params"], "created_at": st["created"], "timeout_ms": st["timeout"],
            "expires_at": st["expires"], "attempt": st["attempt"], "idempotency_key": st["idem"],
            "protocol": st["protocol"], "max_attempts": st["max"]}


def to_state_record(st: dict) -> dict:
    return {"tenant_id": st["t"], "device_id": st["d"], "command_id": st["id"], "name": st["name"],
            "params_json": st["params"], "status": st["status"], "attempt": st["attempt"], "max_attempts": st["max"],
            "created_at": st["created"], "updated_at": st["updated"], "timeout_ms": st["timeout"],
            "expires_at": st["expires"], "idempotency_key": st["idem"], "protocol": st["protocol"],
            "result_json": st["result"], "reason": st["reason"], "history_json": json.dumps(st["history"])}


def state_key(tenant_id: str, device_id: str, command_id: str) -> bytes:
    return f"{tenant_id}:{device_id}:{command_id}".encode()


def publish(key: bytes, st: dict, deliver: bool) -> list[Emit]:
    """What a change of one command sends: a delivery attempt if one is due, then the command's state."""
    out = [Emit(DELIVERIES, device_key(st["t"], st["d"]), to_command(st))] if deliver else []
    out.append(Emit(STATES, key, to_state_record(st)))
    return out


class CommandDriver:
    """The command decisions for the partitions a worker owns: ``on_batch`` takes requests and
    acknowledgements, ``on_tick`` acts on due deadlines (deliveries, retries, timeouts, expiry); both
    return the deliveries and state records to send.

    ``protocol_of(tenant, device)`` names how a command without a protocol reaches its device. Besides the
    commands (``state``) it keeps the keys of non-final commands, rebuilt from the state whenever the owned
    partitions change (after recovery and every rebalance), so a tick looks only at those."""

    def __init__(self, state: State, protocol_of: Callable[[str, str], str | None]):
        self.state, self.protocol_of = state, protocol_of
        self.pending: set[bytes] = set()
        self.owned: set[int] | None = None
        self.ccodec, self.acodec = codec("command"), codec("command_ack")

    def on_batch(self, msgs: Sequence[Message], now: int) -> list[Emit]:
        out: list[Emit] = []
        for msg in msgs:
            raw, part = msg.value, msg.partition
            try:
                if msg.topic == REQUESTS:
                    req = self.ccodec.decode(raw)
                    key = state_key(req["tenant_id"], req["device_id"], req["command_id"])
                    if self.state.get(key) is not None:
                        continue  # the same request again (idempotency key, or a redelivery)
                    st = new_state(req, part, now)
                    if st["protocol"] is None:
                        st["protocol"] = self.protocol_of(st["t"], st["d"])
                    action = on_tick(st, now)
                else:
                    ack = self.acodec.decode(raw)
                    key = state_key(ack["tenant_id"], ack["device_id"], ack["command_id"])
                    st = self.state.get(key)
                    if st is None or not apply_ack(st, ack, now):
                        continue
                    action = None
            except ValueDeserializationError as exc:
                log.warning("commands: skipping undecodable record on %s: %s", msg.topic, exc)
                continue
            self.state.put(part, key, st)
            (self.pending.discard if st["status"] in FINAL else self.pending.add)(key)
            out += publish(key, st, action == "deliver")
        return out

    def on_tick(self, now: int, owned: set[int]) -> list[Emit]:
        if owned != self.owned:  # first tick after recovery or a rebalance: find pending commands again
            self.pending.clear()
            self.pending.update(k for k, v in self.state.items() if v and v["status"] not in FINAL)
            self.owned = owned
        out: list[Emit] = []
        for key in list(self.pending):
            st = self.state.get(key)
            if st is None or st["status"] in FINAL:
                self.pending.discard(key)
                continue
            if st["p"] not in owned or now < st["due"]:
                continue
            before = st["status"], st["attempt"]
            action = on_tick(st, now)
            if (st["status"], st["attempt"]) == before:
                continue
            self.state.put(st["p"], key, st)
            if st["status"] in FINAL:
                self.pending.discard(key)
            out += publish(key, st, action == "deliver")
        return out


def register(app: faust.App, registry: RegistryView) -> None:
    source = app.topic(REQUESTS, ACKS, key_type=bytes, value_type=bytes)
    table = app.Table("commands", default=None, key_type=bytes, value_type=None,
                      partitions=app.conf.topic_partitions)

    def protocol_of(tenant_id: str, device_id: str) -> str | None:
        info = registry.lookup(tenant_id, device_id)
        return info.protocol if info else None

    driver = CommandDriver(TableState(table), protocol_of)
    outbox = Outbox(app, {DELIVERIES: "command", STATES: "command_state"})

    @app.agent(source, name="commands")
    async def commands(stream):
        async for events in stream.take_events(500, within=0.05):
            await outbox.send(driver.on_batch([ev.message for ev in events], now_ms()))

    @app.timer(TICK_S)
    async def tick():
        if not app.tables.recovery.completed.is_set():
            return
        await outbox.send(driver.on_tick(now_ms(), owned_partitions(app, REQUESTS)))
