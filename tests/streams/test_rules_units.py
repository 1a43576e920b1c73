"""The rules agent's decisions without a broker (``streams.rules.RuleEngine``, adr/0055, 0123): an alert's
lifecycle (fire on the transition to true, once, clear with the same activation id), late readings,
tenant isolation and scope, rule versions, state written only when it must survive, and inactivity
fired from the partition's event-time watermark."""

from __future__ import annotations

from schemas import codec, device_key, topics
from streams.actions import activation_id
from streams.rules import IDLE_GRACE_MS, RuleEngine
from streams.rules_view import Rule
from tests.streams.unitkit import MemoryState, Msg

T0 = 1_000_000
HOT = {"type": "threshold", "metric": "t", "op": ">", "value": 90}


def rule(condition: dict = HOT, *, rule_id: str = "r1", version: int = 1, tenant: str = "t", scope=None) -> Rule:
    return Rule(tenant, rule_id, version, "hot", scope or {}, condition, ({"type": "alert"},))


def engine(*rules: Rule) -> tuple[RuleEngine, MemoryState]:
    by_tenant: dict[str, dict[str, Rule]] = {}
    for r in rules:
        by_tenant.setdefault(r.tenant_id, {})[r.rule_id] = r
    state = MemoryState()
    return RuleEngine(state, lambda tenant: by_tenant.get(tenant, {})), state


def reading(ts: int, values: dict, *, tenant: str = "t", device: str = "d", partition: int = 0,
            device_type: str | None = None, tags: tuple = (), decoded: bool = True) -> Msg:
    rec = {"tenant_id": tenant, "device_id": device, "event_time": ts, "receive_time": ts, "protocol": "mqtt",
           "values": values, "device_type": device_type, "tags": list(tags)}
    raw = codec("telemetry").encode(rec)
    return Msg(topics.TELEMETRY.name, partition, device_key(tenant, device), raw, rec if decoded else None)


def kinds(transitions) -> list[tuple[str, int]]:
    return [("fire" if t.fired else "clear", t.ts) for t in transitions]


def test_an_alert_fires_once_and_clears_with_its_activation_id():
    r = rule()
    en, state = engine(r)
    fired = en.on_batch([reading(T0, {"t": 50}), reading(T0 + 1, {"t": 95})], T0)
    assert kinds(fired) == [("fire", T0 + 1)]
    assert fired[0].aid == activation_id(r, "d", T0 + 1) and fired[0].device_id == "d"
    assert fired[0].values == {"t": 95} and fired[0].raw is not None, "the reading travels to republish actions"
    assert en.on_batch([reading(T0 + 2, {"t": 99}), reading(T0 + 3, {"x": 1})], T0) == [], "still true: no repeat"
    cleared = en.on_batch([reading(T0 + 4, {"t": 10})], T0)
    assert kinds(cleared) == [("clear", T0 + 4)] and cleared[0].aid == fired[0].aid
    assert en.stats == {"records": 5, "evaluations": 5, "fired": 1, "cleared": 1}
    assert state[device_key("t", "d")]["r1"]["active"] is False


def test_fire_and_clear_in_one_batch_keep_each_activation_id():
    r = rule()
    en, _ = engine(r)
    out = en.on_batch([reading(T0, {"t": 95}), reading(T0 + 1, {"t": 1}), reading(T0 + 2, {"t": 95})], T0)
    assert kinds(out) == [("fire", T0), ("clear", T0 + 1), ("fire", T0 + 2)]
    assert out[0].aid == out[1].aid == activation_id(r, "d", T0) != out[2].aid


def test_a_late_reading_neither_fires_nor_clears():
    en, _ = engine(rule())
    en.on_batch([reading(T0, {"t": 95})], T0)
    assert en.on_batch([reading(T0 - 1, {"t": 1})], T0) == []
    assert kinds(en.on_batch([reading(T0 + 1, {"t": 1})], T0)) == [("clear", T0 + 1)]


def test_state_is_written_only_when_something_must_survive_a_restart():
    en, state = engine(rule({"type": "for", "for_s": 10, "condition": HOT}))
    en.on_batch([reading(T0, {"t": 1})], T0)
    assert len(state.writes) == 1, "the device's first reading creates its state"
    en.on_batch([reading(T0 + i, {"t": 1}) for i in range(1, 50)], T0)
    assert len(state.writes) == 1, "readings that change nothing lasting are not written"
    en.on_batch([reading(T0 + 100, {"t": 95})], T0)
    assert len(state.writes) == 2, "a holding condition starting is written"
    en.on_batch([reading(T0 + 200, {"t": 96})], T0)
    assert len(state.writes) == 2
    assert kinds(en.on_batch([reading(T0 + 10_100, {"t": 97})], T0)) == [("fire", T0 + 10_100)]
    assert len(state.writes) == 3


def test_a_tenants_rules_see_only_its_readings_in_scope():
    en, state = engine(rule(tenant="a", scope={"device_types": ["boiler"]}))
    assert en.on_batch([reading(T0, {"t": 95}, tenant="b")], T0) == []
    assert en.on_batch([reading(T0, {"t": 95}, tenant="a", device_type="pump")], T0) == []
    assert en.stats["evaluations"] == 0
    out = en.on_batch([reading(T0, {"t": 95}, tenant="a", device_type="boiler", decoded=False)], T0)
    assert kinds(out) == [("fire", T0)], "a reading without its decoded record is decoded"
    assert en.on_batch([Msg(topics.TELEMETRY.name, 0, None, b""), Msg(topics.TELEMETRY.name, 0, b"a:d", b"x")], T0) == []
    assert device_key("b", "d") not in state, "a tenant without rules keeps no state"


def test_a_new_rule_version_starts_afresh_but_can_still_clear():
    en, state = engine(rule(version=1))
    fired = en.on_batch([reading(T0, {"t": 95})], T0)
    en2 = RuleEngine(state, lambda tenant: {"r1": rule(version=2)})
    cleared = en2.on_batch([reading(T0 + 1, {"t": 1})], T0)
    assert kinds(cleared) == [("clear", T0 + 1)] and cleared[0].aid == fired[0].aid
    assert state[device_key("t", "d")]["r1"]["v"] == 2


def test_inactivity_fires_from_the_watermark_once_and_clears_on_the_next_reading():
    r = rule({"type": "inactivity", "for_s": 2}, rule_id="quiet")
    en, state = engine(r)
    assert en.on_batch([reading(T0, {"t": 1})], T0) == []
    assert en.on_tick(T0, {0}) == []
    en.on_batch([reading(T0 + 2001, {"t": 1}, device="other")], T0)
    assert en.on_tick(T0, {1}) == [], "partition 0 is another worker's"
    out = en.on_tick(T0, {0})
    assert kinds(out) == [("fire", T0 + 2000)], "stamped last reading + for_s"
    assert out[0].device_id == "d" and out[0].values == {} and out[0].raw is None
    assert out[0].aid == activation_id(r, "d", T0 + 2000)
    assert state[device_key("t", "d")]["quiet"]["active"] is True
    assert en.on_tick(T0, {0}) == [], "fired once"
    assert en.on_batch([reading(T0 + 1999, {"t": 1})], T0) == [], "older than the firing: late"
    assert kinds(en.on_batch([reading(T0 + 3000, {"t": 1})], T0)) == [("clear", T0 + 3000)]


def test_inactivity_on_an_idle_partition_follows_the_clock():
    en, _ = engine(rule({"type": "inactivity", "for_s": 2}))
    en.on_batch([reading(T0, {"t": 1}, partition=3)], T0)
    assert en.on_tick(T0 + IDLE_GRACE_MS + 2000, {3}) == []
    assert kinds(en.on_tick(T0 + IDLE_GRACE_MS + 2001, {3})) == [("fire", T0 + 2000)]
