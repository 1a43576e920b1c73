"""Shadow agent: one document per device with desired and reported state (adr/0053).

Input: ``fleetstream.shadow-updates`` (DESIRED from the API with an optional expected version, REPORTED
from the device through the MQTT downlink) and ``fleetstream.device-events`` (a CONNECTED device gets its
pending delta again). Output: the whole document on the compacted ``fleetstream.shadows`` after every
change (the gateway's view, readable while the device is offline), flagged ``publish_delta`` when the
delta must reach the device, and answering the update's ``request_id`` with an outcome.

State: a Faust table keyed ``tenant:device`` with a changelog; a restarted worker continues from the
last version. Each document remembers the offset of the last update it applied (a device's updates
share one partition), so updates replayed after a crash are not applied twice. Merging is per top-level key; a ``null`` value deletes the key.

The decisions are ``ShadowKeeper``'s (records, state and clock in, records to send out);
``register()`` wires it to Faust (adr/0123).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import faust

from schemas import ValueDeserializationError, codec, device_key, topics

from .bundles import Reading
from .units import Emit, Message, Outbox, State, TableState

log = logging.getLogger(__name__)

SHADOWS = topics.SHADOWS.name
MAX_BYTES = 64 * 1024
RESEND_QUIET_MS = 10_000
ONLINE_EVENTS = frozenset({"CONNECTED", "ONLINE"})  # the device is back: send its pending delta again


def empty(partition: int) -> dict:
    return {"desired": {}, "reported": {}, "meta": {"desired": {}, "reported": {}}, "version": 0, "p": partition}


def delta_of(doc: dict) -> dict:
    reported = doc["reported"]
    return {k: v for k, v in doc["desired"].items() if k not in reported or reported[k] != v}


def size_of(doc: dict) -> int:
    return len(json.dumps(doc["desired"], separators=(",", ":"))) + len(json.dumps(doc["reported"], separators=(",", ":")))


def apply_update(doc: dict, side: str, state: dict, ts: int, expected_version: int | None) -> str:
    """Merges ``state`` into one side of ``doc`` (in place only when applied). Returns the outcome:
    ``applied`` | ``unchanged`` | ``version_mismatch`` | ``too_large``."""
    if expected_version is not None and expected_version != doc["version"]:
        return "version_mismatch"
    target, meta = dict(doc[side]), dict(doc["meta"][side])
    changed = False
    for k, v in state.items():
        if v is None:
            if k in target:
                del target[k]
                meta.pop(k, None)
                changed = True
        elif target.get(k, _MISSING) != v:
            target[k], meta[k] = v, ts
            changed = True
    if not changed:
        return "unchanged"
    trial = {**doc, side: target}
    if size_of(trial) > MAX_BYTES:
        return "too_large"
    doc[side] = target
    doc["meta"] = {**doc["meta"], side: meta}
    doc["version"] += 1
    return "applied"


_MISSING = object()


def to_record(tenant_id: str, device_id: str, doc: dict, now: int, *, publish_delta: bool,
              request_id: str | None = None, outcome: str | None = None) -> dict:
    return {"tenant_id": tenant_id, "device_id": device_id, "version": doc["version"],
            "desired_json": json.dumps(doc["desired"]), "reported_json": json.dumps(doc["reported"]),
            "delta_json": json.dumps(delta_of(doc)), "metadata_json": json.dumps(doc["meta"]), "time": now,
            "publish_delta": publish_delta, "request_id": request_id, "outcome": outcome}


class ShadowKeeper:
    """The shadow decisions for the devices of the partitions a worker owns: ``on_updates`` applies
    desired/reported updates, ``on_device_events`` re-sends a pending delta to a device that came back;
    both return the documents to send on ``fleetstream.shadows``.

    Besides the documents (``state``) it remembers which version's delta it last re-sent to each device
    and when (not persisted), so the two ONLINE events of one reconnect send it once."""

    def __init__(self, state: State):
        self.state = state
        self.resent: dict[tuple[str, str], tuple[int, int]] = {}  # (version, when) of the last delta re-sent
        self.ucodec, self.ecodec = codec("shadow_update"), codec("device_event")

    def on_device_events(self, msgs: Sequence[Reading], now: int) -> list[Emit]:
        """A device came (back) online: send its pending delta again."""
        out: list[Emit] = []
        for msg in msgs:
            try:
                e = self.ecodec.decode(msg.value)
            except ValueDeserializationError:
                continue
            if e["event_type"] not in ONLINE_EVENTS:
                continue
            doc = self.state.get(device_key(e["tenant_id"], e["device_id"]))
            if doc is None or not delta_of(doc):
                continue
            k = (e["tenant_id"], e["device_id"])
            last = self.resent.get(k)
            if last is not None and last[0] == doc["version"] and now - last[1] < RESEND_QUIET_MS:
                continue  # the connector's and the status agent's ONLINE for one reconnect
            self.resent[k] = (doc["version"], now)
            rec = to_record(e["tenant_id"], e["device_id"], doc, now, publish_delta=True)
            out.append(Emit(SHADOWS, device_key(e["tenant_id"], e["device_id"]), rec))
        return out

    def on_updates(self, msgs: Sequence[Message], now: int) -> list[Emit]:
        """Updates from ``fleetstream.shadow-updates``: each applied one, and each one carrying a
        ``request_id`` whatever its outcome, sends the device's document."""
        out: list[Emit] = []
        for msg in msgs:
            part, offset = msg.partition, msg.offset
            try:
                u = self.ucodec.decode(msg.value)
            except ValueDeserializationError as exc:
                log.warning("shadows: skipping undecodable record on %s: %s", msg.topic, exc)
                continue
            key = device_key(u["tenant_id"], u["device_id"])
            doc = self.state.get(key) or empty(part)
            if offset <= doc.get("o", -1):
                continue  # replayed after a crash (offset not yet committed): already applied
            try:
                state = json.loads(u["state_json"])
                if not isinstance(state, dict):
                    raise ValueError("not an object")
            except ValueError:
                outcome = "invalid"
            else:
                side = "desired" if u["side"] == "DESIRED" else "reported"
                before = delta_of(doc)
                outcome = apply_update(doc, side, state, u["time"] or now, u["expected_version"])
            if outcome == "applied":
                doc["p"], doc["o"] = part, offset
                self.state.put(part, key, doc)
                # the device learns of desired changes; its own reports only shrink the delta
                publish_delta = side == "desired" and bool(delta_of(doc)) and delta_of(doc) != before
            elif u["request_id"] is None:
                if outcome != "unchanged":
                    log.info("shadow update for %s refused: %s", key, outcome)
                continue
            else:
                publish_delta = False
            rec = to_record(u["tenant_id"], u["device_id"], doc, now, publish_delta=publish_delta,
                            request_id=u["request_id"], outcome=outcome)
            out.append(Emit(SHADOWS, key, rec))
        return out


def register(app: faust.App):
    source = app.topic(topics.SHADOW_UPDATES.name, key_type=bytes, value_type=bytes)
    table = app.Table("shadows", default=None, key_type=bytes, value_type=None,
                      partitions=app.conf.topic_partitions)
    keeper = ShadowKeeper(TableState(table))
    outbox = Outbox(app, {SHADOWS: "shadow_document"})

    async def on_device_events(msgs: Sequence[Reading]) -> None:
        """Called by the device-activity agent with its batch of device events."""
        await outbox.send(keeper.on_device_events(msgs, time.time_ns() // 1_000_000))

    @app.agent(source, name="shadows")
    async def shadows(stream):
        async for events in stream.take_events(500, within=0.05):
            await outbox.send(keeper.on_updates([ev.message for ev in events], time.time_ns() // 1_000_000))

    return on_device_events
