"""The gateway's view of command states is bounded (adr/0192): live commands are always held; finished ones at
most ``finished_per_device`` per device (the newest) and none finished longer ago than the retention. Pure: the
view's apply path with records encoded as the command agent writes them; no Kafka."""

from __future__ import annotations

import json
import time
import uuid

from gateway.streams_client import StreamsClient
from schemas import codec, topics

TENANT = str(uuid.UUID(int=42))
DAY_MS = 86_400_000


def _view(retention_s: float = 86_400, per_device: int = 5) -> StreamsClient:
    view = StreamsClient.__new__(StreamsClient)  # the view alone, no Kafka clients
    view._init_view(command_retention_s=retention_s, finished_per_device=per_device)
    return view


def _state(device: str, cid: str, status: str, updated_at: int) -> bytes:
    return codec("command_state").encode({
        "tenant_id": TENANT, "device_id": device, "command_id": cid, "name": "reboot", "params_json": "{}",
        "status": status, "attempt": 1, "max_attempts": 3, "created_at": updated_at - 100, "updated_at": updated_at,
        "timeout_ms": 30_000, "expires_at": None, "idempotency_key": None, "protocol": "mqtt", "result_json": None,
        "reason": None, "history_json": json.dumps([["queued", updated_at - 100], [status, updated_at]])})


def _apply(view: StreamsClient, device: str, cid: str, status: str, updated_at: int) -> None:
    view._apply(topics.COMMAND_STATES.name, f"{TENANT}:{device}:{cid}".encode(),
                _state(device, cid, status, updated_at))


def _now() -> int:
    return time.time_ns() // 1_000_000


def test_a_device_keeps_its_newest_finished_commands_and_every_live_one():
    view, now = _view(per_device=5), _now()
    _apply(view, "d1", "live-1", "sent", now - 10_000)  # older than all, but not finished: always held
    for i in range(30):
        _apply(view, "d1", f"c{i:02d}", "queued", now - 5000 + i)
        _apply(view, "d1", f"c{i:02d}", "succeeded" if i % 2 else "failed", now - 4000 + i)
    _apply(view, "d2", "other", "timed_out", now)
    held = sorted(c["command_id"] for c in view.device_commands(TENANT, "d1"))
    assert held == ["c25", "c26", "c27", "c28", "c29", "live-1"]
    assert view.command(TENANT, "d1", "c24") is None and view.command(TENANT, "d1", "live-1")["status"] == "sent"
    assert [c["command_id"] for c in view.device_commands(TENANT, "d2")] == ["other"]  # another device's own
    # the live one finishing takes a place among the newest: the oldest finished one leaves
    _apply(view, "d1", "live-1", "succeeded", now)
    assert sorted(c["command_id"] for c in view.device_commands(TENANT, "d1")) == \
        ["c26", "c27", "c28", "c29", "live-1"]


def test_finished_commands_past_the_retention_leave_the_view():
    view, now = _view(retention_s=86_400, per_device=100), _now()
    # replayed at start-up: sent two days ago, finished two days ago -> not held at all, live state included
    _apply(view, "d1", "old", "sent", now - 2 * DAY_MS)
    _apply(view, "d1", "old", "succeeded", now - 2 * DAY_MS + 50)
    assert view.command(TENANT, "d1", "old") is None and ("d1" not in {d for _, d in view.commands})
    # finished 23 h ago: held now; a live command that old stays whatever its age
    _apply(view, "d1", "recent", "expired", now - 23 * 3_600_000)
    _apply(view, "d1", "pending", "queued", now - 3 * DAY_MS)
    assert {c["command_id"] for c in view.device_commands(TENANT, "d1")} == {"recent", "pending"}
    # two hours later: reads hide it at once, the sweep frees it
    later = now + 2 * 3_600_000
    assert view.sweep_commands(now_ms=later) == 1
    assert set(view.commands[(TENANT, "d1")]) == {"pending"} and (TENANT, "d1") not in view.finished


def test_reads_apply_the_retention_before_the_sweep_runs(monkeypatch):
    import gateway.streams_client as sc

    view, now = _view(retention_s=60), _now()
    _apply(view, "d1", "c1", "succeeded", now - 30_000)
    assert view.command(TENANT, "d1", "c1") is not None
    monkeypatch.setattr(sc, "_now_ms", lambda: now + 60_000)  # 90 s after it finished; no sweep yet
    assert view.command(TENANT, "d1", "c1") is None and view.device_commands(TENANT, "d1") == []
    assert "c1" in view.commands[(TENANT, "d1")]  # memory is the sweep's job


def test_a_tombstone_removes_a_command():
    view, now = _view(), _now()
    _apply(view, "dev:with:colons", "c1", "succeeded", now)
    view._apply(topics.COMMAND_STATES.name, f"{TENANT}:dev:with:colons:c1".encode(), None)
    assert view.commands == {} and view.finished == {}


def test_memory_stops_growing_with_commands_sent():
    """1,000 devices x 60 finished commands each, 5 held per device: what is held (and indexed) is 5,000 states,
    not 60,000 (the per-100k figures are in bench/results, `fleetstream.bench.gateway_state`)."""
    view, now = _view(per_device=5), _now()
    for i in range(60):
        for d in range(1000):
            _apply(view, f"d{d}", f"c{i}", "succeeded", now - 60_000 + i)
    assert sum(len(v) for v in view.commands.values()) == 5000
    assert sum(len(v) for v in view.finished.values()) == 5000
    assert sorted(view.commands[(TENANT, "d7")]) == ["c55", "c56", "c57", "c58", "c59"]
