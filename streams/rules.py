"""Rules agent: evaluates each validated reading against its tenant's enabled rules (adr/0055, 0056).

Per device and rule the agent keeps whether the rule is active, the activation id, the event time of the
latest reading evaluated, and what rate and holding conditions remember. A reading older than the latest
one evaluated for that rule and device is late: it cannot change the current state and is skipped (so a
late or out-of-order reading neither fires nor clears). A rule fires on the transition to true and clears
on the transition to false; while it stays true nothing is repeated (de-duplication). Inactivity rules
fire from a timer when the partition's event-time watermark passes the last reading plus ``for_s``.

State: a Faust table keyed ``tenant:device`` (one entry holds all that device's rules), written only when
something that must survive a restart changes (a transition, a holding condition starting or stopping,
inactivity bookkeeping at most every quarter window), never per reading.

The decisions are ``RuleEngine``'s (readings, state and clock in, fired and cleared rules out);
``register()`` wires it to Faust (adr/0123).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import faust

from schemas import ValueDeserializationError, codec
from schemas.rules import evaluate, in_scope
from schemas.webhook_targets import WebhookPolicy

from . import bundles
from .actions import ActionRunner, activation_id
from .bundles import Reading
from .rules_view import Rule, RulesView
from .tables import owned_partitions
from .units import State, TableState

log = logging.getLogger(__name__)

IDLE_GRACE_MS = 10_000
TICK_S = 1.0


def new_rule_state(rule: Rule) -> dict:
    return {"v": rule.version, "active": False, "aid": None, "ts": 0, "last": 0, "saved": 0, "s": {}}


def step(rule: Rule, rs: dict, values: dict, ts: int) -> tuple[str | None, bool]:
    """Evaluates one reading for one rule. Returns (``"fire"`` | ``"clear"`` | None, must persist)."""
    if ts < rs["ts"]:
        return None, False  # late: the state already reflects a newer reading
    rs["ts"] = ts
    holding_before = {k for k in rs["s"] if not isinstance(rs["s"][k], list)}
    result = evaluate(rule.condition, values, ts, rs["s"])
    persist = holding_before != {k for k in rs["s"] if not isinstance(rs["s"][k], list)}
    if rule.inactivity and result is False:
        rs["last"] = ts
        persist = persist or ts - rs["saved"] > rule.condition["for_s"] * 250
    if result is True and not rs["active"]:
        rs["active"], rs["aid"] = True, None
        return "fire", True
    if result is False and rs["active"]:
        rs["active"] = False
        return "clear", True
    return None, persist


class Transition(NamedTuple):
    """A rule fired or cleared for a device: what ``ActionRunner.run`` acts on."""

    rule: Rule
    device_id: str
    fired: bool
    aid: str
    ts: int
    values: dict
    raw: bytes | None


class RuleEngine:
    """The rule decisions for the devices of the partitions a worker owns: ``on_batch`` evaluates
    readings, ``on_tick`` fires inactivity rules; both return the transitions whose actions must run, after
    the state that records them has been written (a replay after a crash sees the alert raised).

    ``rules_of(tenant)`` gives a tenant's enabled rules by id. Besides the per-device state (``state``) it
    keeps each partition's event-time watermark and the wall time of its latest reading (not persisted)."""

    def __init__(self, state: State, rules_of: Callable[[str], dict[str, Rule]]):
        self.state, self.rules_of = state, rules_of
        self.watermarks: dict[int, int] = {}
        self.last_wall: dict[int, int] = {}
        self.tcodec = codec("telemetry")
        self.stats = {"records": 0, "evaluations": 0, "fired": 0, "cleared": 0}

    def on_batch(self, msgs: Sequence[Reading], wall: int) -> list[Transition]:
        """A batch of validated readings (the device-activity agent's, adr/0050)."""
        out: list[Transition] = []
        stats, get, rules_of = self.stats, self.state.get, self.rules_of
        for msg in msgs:
            key, part = msg.key, msg.partition
            stats["records"] += 1
            if not key:
                continue
            tenant = key[:key.find(b":")].decode()
            mine = rules_of(tenant)  # only this tenant's rules ever see this reading
            if not mine:
                continue
            rec = msg.rec  # decoded by validate (bundles.py)
            if rec is None:
                try:
                    rec = self.tcodec.decode(msg.value)
                except ValueDeserializationError:
                    continue
            ts, values, device = rec["event_time"], rec["values"], rec["device_id"]
            if ts > self.watermarks.get(part, 0):
                self.watermarks[part] = ts
            self.last_wall[part] = wall
            st = get(key)
            dirty = st is None
            st = st or {"_p": part}
            todo = []
            for rule in mine.values():
                if not in_scope(rule.scope, device, rec["device_type"], rec["tags"]):
                    continue
                rs = st.get(rule.rule_id)
                if rs is None or rs["v"] != rule.version:
                    fresh = new_rule_state(rule)
                    if rs is not None:  # a new version keeps its activation, so it can still clear
                        fresh["active"], fresh["aid"] = rs["active"], rs["aid"]
                    st[rule.rule_id] = rs = fresh
                    dirty = True
                stats["evaluations"] += 1
                what, persist = step(rule, rs, values, ts)
                dirty = dirty or persist
                if what:
                    todo.append((rule, rs, what))
            if not dirty:
                continue
            for rule, rs, what in todo:
                if what == "fire":
                    rs["aid"] = activation_id(rule, device, ts)
            for rs in st.values():
                if isinstance(rs, dict):
                    rs["saved"] = rs.get("last", 0)
            self.state.put(part, key, st)
            for rule, rs, what in todo:
                stats["fired" if what == "fire" else "cleared"] += 1
                out.append(Transition(rule, device, what == "fire", rs["aid"], ts, values, msg.value))
        return out

    def on_tick(self, wall: int, owned: set[int]) -> list[Transition]:
        """Inactivity rules of the ``owned`` partitions' devices fire when the partition's watermark passes
        the device's last reading plus ``for_s``, stamped in event time."""
        out: list[Transition] = []
        for key, st in list(self.state.items()):
            if not st or st.get("_p") not in owned:
                continue
            tenant, _, device = key.decode().partition(":")
            rules = [r for r in self.rules_of(tenant).values() if r.inactivity and r.rule_id in st]
            if not rules:
                continue
            p = st["_p"]
            wm = self.watermarks.get(p, 0)
            if wall - self.last_wall.get(p, 0) > IDLE_GRACE_MS:
                wm = max(wm, wall - IDLE_GRACE_MS)
            fired = []
            for rule in rules:
                rs = st[rule.rule_id]
                window = int(rule.condition["for_s"] * 1000)
                if rs["active"] or not rs["last"] or wm - rs["last"] <= window:
                    continue
                at = rs["last"] + window
                rs["active"], rs["aid"], rs["ts"] = True, activation_id(rule, device, at), max(rs["ts"], at)
                fired.append((rule, rs, at))
            if fired:
                self.state.put(p, key, st)
                for rule, rs, at in fired:
                    self.stats["fired"] += 1
                    out.append(Transition(rule, device, True, rs["aid"], at, {}, None))
        return out


def register(app: faust.App, rules_view: RulesView, webhooks: WebhookPolicy | None = None,
             topic_config: dict[str, str] | None = None):
    table = app.Table("rule-state", default=None, key_type=bytes, value_type=None, partitions=app.conf.topic_partitions)
    engine = RuleEngine(TableState(table), rules_view.rules_of)
    runner = ActionRunner(app, webhooks, topic_config)

    async def handle(msgs: Sequence[Reading]) -> None:
        for t in engine.on_batch(msgs, time.time_ns() // 1_000_000):
            await runner.run(*t)

    @app.timer(TICK_S)
    async def inactivity():
        if not app.tables.recovery.completed.is_set():
            return
        mine = owned_partitions(app, bundles.topic_name(app.conf.id))
        for t in engine.on_tick(time.time_ns() // 1_000_000, mine):
            await runner.run(*t)

    @app.page("/rules/{tenant}/")
    async def known_rules(web, request, tenant):
        """Which rule versions this worker holds for a tenant (operations, and tests waiting for a rule)."""
        return web.json({rid: r.version for rid, r in rules_view.rules_of(tenant).items()})

    @app.page("/stats/")
    async def stats(web, request):
        return web.json({"rules": engine.stats, "actions": runner.stats})

    @app.timer(30.0)
    async def report():
        log.info("rules agent: %s; actions: %s", engine.stats, runner.stats)

    return handle
