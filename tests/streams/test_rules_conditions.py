"""Each rule condition type firing and clearing on the real pipeline, as a tenant writing rules sees it:
an alert is raised once when the condition becomes true (not again while it stays true) and cleared when
it becomes false; a late, out-of-order reading neither fires nor clears; rules never see another tenant's
readings. Readings go through the real broker, the validate agent and the rules agent."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from schemas import device_key, topics
from schemas.partitioner import partition_for
from tests.streams.rulekit import RuleKit, now_ms
from tests.utils.kafka import records_to_end


@pytest.fixture(scope="module")
def kit(stack, factory, gateway, settings):
    return RuleKit(settings, gateway, factory.tenant("rules"))


def _states(alerts):
    return [(a["state"], a["time"]) for a in alerts]


def test_threshold_fires_once_ignores_a_late_reading_and_clears(kit, factory):
    dev = factory.device(kit.tenant).device_id
    rid = kit.rule({"type": "threshold", "metric": "temperature", "op": ">", "value": 80})
    t0 = now_ms() - 60_000
    kit.send(dev, t0, {"temperature": 70.0})
    kit.send(dev, t0 + 1000, {"temperature": 90.0})   # fires
    kit.send(dev, t0 + 2000, {"temperature": 95.0})   # still true: no second alert
    kit.send(dev, t0 + 500, {"temperature": 20.0})    # late and out of order: ignored
    kit.send(dev, t0 + 3000, {"temperature": 60.0})   # clears
    # fires again: one device's alerts come in order, so a second alert from the readings above would be
    # listed before this one (no waiting out a timeout for something that must not come)
    kit.send(dev, t0 + 4000, {"temperature": 99.0})
    alerts = kit.alerts(rid, count=3)
    assert _states(alerts) == [("ACTIVE", t0 + 1000), ("CLEARED", t0 + 3000), ("ACTIVE", t0 + 4000)]
    assert alerts[0]["alert_id"] == alerts[1]["alert_id"] != alerts[2]["alert_id"]
    assert alerts[0]["severity"] == "MAJOR"
    assert alerts[0]["device_id"] == dev and alerts[0]["tenant_id"] == kit.tenant.tenant_id


def test_range_fires_outside_and_clears_inside(kit, factory):
    dev = factory.device(kit.tenant).device_id
    rid = kit.rule({"type": "range", "metric": "pressure", "min": 10, "max": 20})
    t0 = now_ms() - 60_000
    for i, v in enumerate([15.0, 25.0, 18.0]):
        kit.send(dev, t0 + i * 1000, {"pressure": v})
    assert _states(kit.alerts(rid, count=2)) == [("ACTIVE", t0 + 1000), ("CLEARED", t0 + 2000)]


def test_condition_holding_for_a_duration_in_event_time(kit, factory):
    dev = factory.device(kit.tenant).device_id
    rid = kit.rule({"type": "for", "for_s": 2, "condition": {"type": "threshold", "metric": "t", "op": ">", "value": 50}})
    t0 = now_ms() - 60_000
    # the readings arrive within milliseconds; only their event times span the two seconds
    for i, v in enumerate([60.0, 60.0, 60.0, 40.0]):
        kit.send(dev, t0 + i * 1000, {"t": v})
    assert _states(kit.alerts(rid, count=2)) == [("ACTIVE", t0 + 2000), ("CLEARED", t0 + 3000)]


def test_rate_of_change(kit, factory):
    dev = factory.device(kit.tenant).device_id
    rid = kit.rule({"type": "rate", "metric": "level", "op": ">", "value": 5, "per_s": 1})
    t0 = now_ms() - 60_000
    for i, v in enumerate([10.0, 11.0, 30.0, 31.0]):
        kit.send(dev, t0 + i * 1000, {"level": v})
    assert _states(kit.alerts(rid, count=2)) == [("ACTIVE", t0 + 2000), ("CLEARED", t0 + 3000)]


def test_geofence_radius_and_polygon(kit, factory):
    dev = factory.device(kit.tenant).device_id
    circle = kit.rule({"type": "geofence", "center": [52.52, 13.405], "radius_m": 1000}, name="depot")
    square = kit.rule({"type": "geofence", "polygon": [[52.0, 13.0], [52.0, 14.0], [53.0, 14.0], [53.0, 13.0]],
                       "trigger": "inside"}, name="region")
    t0 = now_ms() - 60_000
    kit.send(dev, t0, {"lat": 52.521, "lon": 13.406})         # in the depot, in the region
    kit.send(dev, t0 + 1000, {"lat": 52.6, "lon": 13.405})    # ~9 km out of the depot, still in the region
    kit.send(dev, t0 + 2000, {"lat": 51.5, "lon": 13.405})    # out of the region too
    kit.send(dev, t0 + 3000, {"lat": 52.52, "lon": 13.405})   # home
    assert _states(kit.alerts(circle, count=2)) == [("ACTIVE", t0 + 1000), ("CLEARED", t0 + 3000)]
    assert _states(kit.alerts(square, count=3)) == [("ACTIVE", t0), ("CLEARED", t0 + 2000), ("ACTIVE", t0 + 3000)]


def test_all_and_any_combinations_scoped_to_devices(kit, factory):
    dev, other = factory.device(kit.tenant).device_id, factory.device(kit.tenant).device_id
    both = kit.rule({"type": "all", "conditions": [{"type": "threshold", "metric": "temp", "op": ">", "value": 30},
                                                   {"type": "threshold", "metric": "hum", "op": "<", "value": 20}]},
                    scope={"devices": [dev]})
    either = kit.rule({"type": "any", "conditions": [{"type": "threshold", "metric": "temp", "op": ">", "value": 30},
                                                     {"type": "threshold", "metric": "hum", "op": "<", "value": 20}]},
                      scope={"devices": [dev]})
    # sentinels instead of waiting out a timeout for alerts that must not come: one device's alerts come in
    # order (one key, one partition), so once a device's last expected alert is out, any alert its earlier
    # readings raised is on the topic before it. The out-of-scope device gets a rule of its own for that.
    probe = kit.rule({"type": "threshold", "metric": "temp", "op": ">", "value": 30}, scope={"devices": [other]})
    t0 = now_ms() - 60_000
    kit.send(other, t0, {"temp": 40.0, "hum": 10.0})  # out of scope of both and either: nothing from them
    kit.send(other, t0 + 1000, {"temp": 20.0, "hum": 50.0})  # the probe's sentinel: it clears
    for i, (temp, hum) in enumerate([(35.0, 50.0), (35.0, 10.0), (20.0, 10.0), (20.0, 50.0), (35.0, 50.0)]):
        kit.send(dev, t0 + i * 1000, {"temp": temp, "hum": hum})  # the last: either's sentinel (fires again)
    assert _states(kit.alerts(probe, count=2)) == [("ACTIVE", t0), ("CLEARED", t0 + 1000)]
    assert len(kit.alerts(either, count=3)) == 3
    # every alert of both devices' readings is on the topic now: all of them, to its end
    alerts = [a for d in (dev, other) for a in records_to_end(kit.s.bootstrap_servers, topics.ALERTS.name,
                                                              device_key(kit.tenant.tenant_id, d))]
    assert _states([a for a in alerts if a["rule_id"] == both]) == [("ACTIVE", t0 + 1000), ("CLEARED", t0 + 2000)]
    either_alerts = [a for a in alerts if a["rule_id"] == either]
    assert _states(either_alerts) == [("ACTIVE", t0), ("CLEARED", t0 + 3000), ("ACTIVE", t0 + 4000)]
    assert {a["device_id"] for a in either_alerts} == {dev}


def test_inactivity_fires_when_data_stops_and_clears_when_it_returns(kit, factory):
    dev = factory.device(kit.tenant).device_id
    rid = kit.rule({"type": "inactivity", "for_s": 2})
    t0 = now_ms()
    kit.send(dev, t0, {"v": 1.0})
    fired = kit.alerts(rid, count=1, timeout=60)
    assert _states(fired) == [("ACTIVE", t0 + 2000)], "stamped in event time: last reading + window"
    back = now_ms()
    kit.send(dev, back, {"v": 2.0})
    assert _states(kit.alerts(rid, count=2)) == [("ACTIVE", t0 + 2000), ("CLEARED", back)]


def test_rules_never_see_another_tenants_readings(kit, factory):
    shared_id = "same-name-device"
    # a stranger whose device's readings share a partition with ours, in both telemetry topics and the alerts: the rules
    # agent then takes its reading before ours, and an alert it wrongly raised (keyed like ours) is listed
    # before our last one (a sentinel, instead of waiting out a timeout for an alert that must not come)
    counts = {t: len(md.partitions) for t, md in AdminClient({"bootstrap.servers": kit.s.bootstrap_servers})
              .list_topics(timeout=10).topics.items()
              if t in (topics.TELEMETRY_RAW.name, topics.TELEMETRY.name, topics.ALERTS.name)}
    assert len(counts) == 3

    def same_partitions(tenant_id: str) -> bool:
        return all(partition_for(device_key(tenant_id, shared_id), n) ==
                   partition_for(device_key(kit.tenant.tenant_id, shared_id), n) for n in counts.values())

    stranger = next(t for t in iter(lambda: factory.tenant("stranger"), None) if same_partitions(t.tenant_id))
    factory.device(kit.tenant, shared_id)
    factory.device(stranger, shared_id)
    rid = kit.rule({"type": "threshold", "metric": "x", "op": ">", "value": 0}, scope={"devices": [shared_id]})
    t0 = now_ms() - 60_000
    kit.send(shared_id, t0, {"x": 5.0}, tenant_id=stranger.tenant_id)   # the other tenant's reading
    kit.send(shared_id, t0 + 1000, {"x": -1.0})                         # ours, not matching
    kit.send(shared_id, t0 + 2000, {"x": 7.0})                          # ours, matching
    kit.send(shared_id, t0 + 3000, {"x": -2.0})                         # ours, clearing: the sentinel
    alerts = kit.alerts(rid, count=2)
    assert _states(alerts) == [("ACTIVE", t0 + 2000), ("CLEARED", t0 + 3000)]
    assert {a["tenant_id"] for a in alerts} == {kit.tenant.tenant_id}
