"""What `make chaos-kafka` computes (adr/0133), on made-up samples: pure, no stack."""

from __future__ import annotations

import json

from fleetstream.bench.chaos import _throughput_recovery
from fleetstream.bench.runner import VALIDATE_GROUP
from fleetstream.stack.kafka import active_controller
from runtime.settings import Settings
from schemas import topics

RAW, VALID = f"high:{topics.TELEMETRY_RAW.name}", f"committed:{VALIDATE_GROUP}"


def _work(rates: list[float]) -> list[tuple[float, dict[str, int]]]:
    """One sample a second (records so far); ``rates[i]`` records/s during second i, for both counters."""
    out, total = [], 0.0
    for t, r in enumerate(rates):
        out.append((float(t), {RAW: int(total), VALID: int(total)}))
        total += r
    return out


def test_a_dip_after_the_kill_and_the_time_until_the_rate_is_back():
    rates = [2000] * 20 + [0] * 10 + [4000] * 5 + [2000] * 10  # killed at t=20, back (catching up) at t=30
    got = _throughput_recovery(_work(rates), t_kill=20.0, rate=2000, settle_s=10)
    assert got["raw"]["before_per_s"] == 2000
    assert got["raw"]["lowest_after_per_s"] == 0
    # the 3-s window first reaches 90 % of 2,000/s when it holds ≥ 5,400 records: two seconds at 4,000/s
    assert got["raw"]["recovered_after_s"] == 12.0
    assert got["validated"] == got["raw"]


def test_no_dip_is_zero_and_never_back_is_none():
    steady = _throughput_recovery(_work([2000] * 40), t_kill=20.0, rate=2000, settle_s=10)
    assert steady["raw"]["recovered_after_s"] == 0.0
    dead = _throughput_recovery(_work([2000] * 20 + [0] * 20), t_kill=20.0, rate=2000, settle_s=10)
    assert dead["raw"]["recovered_after_s"] is None


def test_the_active_controller_is_the_newest_epochs_leader(tmp_path):
    s = Settings(data_dir=tmp_path, kafka_brokers=3)
    for node, state in ((1, {"leaderId": 1, "leaderEpoch": 4}), (2, {"leaderId": 3, "leaderEpoch": 5}),
                        (3, {"leaderId": -1, "leaderEpoch": 6})):
        d = tmp_path / "kafka" / f"node-{node}" / "data" / "__cluster_metadata-0"
        d.mkdir(parents=True)
        (d / "quorum-state").write_text(json.dumps({**state, "votedId": -1, "data_version": 1}))
    assert active_controller(s) == 3
