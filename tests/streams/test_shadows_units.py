"""The shadow agent's decisions without a broker (``streams.shadows.ShadowKeeper``, adr/0053, 0123):
versions, deltas and when the device must hear of them, answers to requests, updates replayed after a
crash, and the delta re-sent once when a device comes back."""

from __future__ import annotations

import json

from schemas import device_key, topics
from streams.shadows import RESEND_QUIET_MS, ShadowKeeper
from tests.streams.unitkit import MemoryState, check_encodes, encoded

T0 = 1_000_000
KEY = device_key("t", "d")


def update(side: str, state, *, offset: int, expected: int | None = None, request_id: str | None = None,
           device: str = "d"):
    body = state if isinstance(state, str) else json.dumps(state)
    return encoded("shadow_update", {"tenant_id": "t", "device_id": device, "side": side, "state_json": body,
                                     "time": T0 + offset, "expected_version": expected, "request_id": request_id},
                   topics.SHADOW_UPDATES.name, offset=offset)


def came_back(kind: str = "CONNECTED"):
    return encoded("device_event", {"tenant_id": "t", "device_id": "d", "event_type": kind, "time": T0,
                                    "source": "mqtt", "reason": None, "details": {}}, topics.DEVICE_EVENTS.name)


def docs(emits) -> list[dict]:
    check_encodes(emits, {topics.SHADOWS.name: "shadow_document"})
    return [{"version": e.record["version"], "delta": json.loads(e.record["delta_json"]),
             "publish_delta": e.record["publish_delta"], "outcome": e.record["outcome"],
             "request_id": e.record["request_id"]} for e in emits]


def test_desired_changes_reach_the_device_and_reports_only_shrink_the_delta():
    state = MemoryState()
    keeper = ShadowKeeper(state)
    out = keeper.on_updates([update("DESIRED", {"a": 1, "b": 2}, offset=0, request_id="q1")], T0)
    assert docs(out) == [{"version": 1, "delta": {"a": 1, "b": 2}, "publish_delta": True, "outcome": "applied",
                          "request_id": "q1"}]
    assert out[0].key == KEY and state.writes == [(0, KEY)]
    out = keeper.on_updates([update("REPORTED", {"a": 1}, offset=1)], T0)
    assert docs(out) == [{"version": 2, "delta": {"b": 2}, "publish_delta": False, "outcome": "applied",
                          "request_id": None}]
    out = keeper.on_updates([update("DESIRED", {"a": 1}, offset=2, request_id="q2")], T0)
    assert docs(out)[0]["outcome"] == "unchanged" and not out[0].record["publish_delta"]
    out = keeper.on_updates([update("DESIRED", {"c": None}, offset=3)], T0)
    assert out == [], "nothing changed and nobody asked: nothing sent"
    out = keeper.on_updates([update("DESIRED", {"b": 3}, offset=4)], T0)
    assert docs(out)[0]["delta"] == {"b": 3} and out[0].record["publish_delta"]
    meta = json.loads(out[0].record["metadata_json"])
    assert meta["desired"]["b"] == T0 + 4, "each key remembers when it was last set"


def test_a_desired_value_the_device_already_reports_is_not_pushed():
    keeper = ShadowKeeper(MemoryState())
    keeper.on_updates([update("REPORTED", {"mode": "eco"}, offset=0)], T0)
    out = keeper.on_updates([update("DESIRED", {"mode": "eco"}, offset=1)], T0)
    assert docs(out) == [{"version": 2, "delta": {}, "publish_delta": False, "outcome": "applied", "request_id": None}]


def test_refused_updates_answer_only_the_request_and_change_nothing():
    keeper = ShadowKeeper(MemoryState())
    keeper.on_updates([update("DESIRED", {"a": 1}, offset=0)], T0)
    writes = list(keeper.state.writes)
    out = keeper.on_updates([update("DESIRED", {"a": 2}, offset=1, expected=0, request_id="q")], T0)
    assert docs(out) == [{"version": 1, "delta": {"a": 1}, "publish_delta": False, "outcome": "version_mismatch",
                          "request_id": "q"}]
    assert docs(keeper.on_updates([update("DESIRED", "[1]", offset=2, request_id="q")], T0))[0]["outcome"] == "invalid"
    assert docs(keeper.on_updates([update("DESIRED", {"x": "y" * 70_000}, offset=3, request_id="q")], T0))[0][
        "outcome"] == "too_large"
    assert keeper.on_updates([update("DESIRED", {"a": 2}, offset=4, expected=7)], T0) == []
    assert keeper.state.writes == writes and keeper.state[KEY]["version"] == 1
    assert docs(keeper.on_updates([update("DESIRED", {"a": 2}, offset=5, expected=1)], T0))[0]["version"] == 2


def test_updates_replayed_after_a_crash_are_not_applied_twice():
    keeper = ShadowKeeper(MemoryState())
    batch = [update("DESIRED", {"n": 1}, offset=10), update("DESIRED", {"n": 2}, offset=11)]
    assert [d["version"] for d in docs(keeper.on_updates(batch, T0))] == [1, 2]
    assert keeper.on_updates(batch, T0) == [], "offsets at or below the last applied one"
    assert keeper.state[KEY]["o"] == 11 and keeper.state[KEY]["desired"] == {"n": 2}
    garbage = update("DESIRED", {}, offset=12)._replace(value=b"junk")
    assert keeper.on_updates([garbage], T0) == []


def test_a_device_that_comes_back_gets_its_pending_delta_once_per_reconnect():
    keeper = ShadowKeeper(MemoryState())
    assert keeper.on_device_events([came_back()], T0) == [], "no document yet"
    keeper.on_updates([update("DESIRED", {"a": 1}, offset=0)], T0)
    out = keeper.on_device_events([came_back("CONNECTED"), came_back("ONLINE")], T0)
    assert docs(out) == [{"version": 1, "delta": {"a": 1}, "publish_delta": True, "outcome": None,
                          "request_id": None}], "the connector's and the status agent's ONLINE: one re-send"
    assert keeper.on_device_events([came_back("OFFLINE")], T0 + RESEND_QUIET_MS) == []
    assert keeper.on_device_events([came_back()], T0 + RESEND_QUIET_MS - 1) == []
    assert len(keeper.on_device_events([came_back()], T0 + RESEND_QUIET_MS)) == 1, "a later reconnect"
    keeper.on_updates([update("DESIRED", {"a": 2}, offset=1)], T0)
    assert len(keeper.on_device_events([came_back()], T0 + RESEND_QUIET_MS + 1)) == 1, "a newer version at once"
    keeper.on_updates([update("REPORTED", {"a": 2}, offset=2)], T0)
    assert keeper.on_device_events([came_back()], T0 + 10 * RESEND_QUIET_MS) == [], "nothing pending"
    assert keeper.on_device_events([came_back()._replace(value=b"junk")], T0) == []
