"""The reliability suite cannot rot: one short chaos round (the MQTT connector killed once at low load) on
the suite's own stack, asserting what `make chaos` promises: the component came back by itself and no
acknowledged reading was lost or duplicated. Recovery times are reported, not asserted (a busy machine)."""

from __future__ import annotations

import json
import os

import pytest

from fleetstream.bench import report
from fleetstream.bench.chaos import ChaosRun
from fleetstream.bench.chaos_report import markdown
from fleetstream.bench.config import chaos
from fleetstream.stack.supervisor import MQTT_ROLES

# added to the default ports (kafka 19092 → 26392): below the ephemeral range with a session offset up to
# ~6,000, clear of the other suites' ports (see tests/stack/test_recovery.py)
PORT_OFFSET = 7_300 + int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "0"))


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_one_connector_kill_at_low_load_loses_nothing(tmp_path):
    cfg = chaos(["connector-mqtt"])
    # 2 s of steady load on each side of the kill (5 s before): ~100 messages ride through the pipeline when the
    # connector dies, and the round's own readings must have been stored before it (flowing_before_kill)
    cfg.rate, cfg.devices, cfg.settle_s, cfg.recover_timeout_s = 50, 5, 2, 240
    cfg.port_offset, cfg.results_dir, cfg.label, cfg.drain_timeout_s = PORT_OFFSET, tmp_path, "chaos-smoke", 120
    cfg.roles = MQTT_ROLES
    result = ChaosRun(cfg).execute()
    path = report.write(result, tmp_path, render=markdown)

    on_disk = json.loads(path.read_text())
    (rnd,) = on_disk["rounds"]
    assert rnd["component"] == "connector-mqtt" and rnd["recovered"], rnd
    assert all(v is not None for v in rnd["recovery_s"].values()), rnd["recovery_s"]
    d = rnd["delivery"]
    assert d["messages_acked"] > 0 and d["points_expected"] == 3 * d["messages_acked"]
    assert d["lost_points"] == 0 and d["duplicated_in_query"] == 0, d
    assert on_disk["delivery"]["drained"], on_disk["drain"]
    assert any(e["component"] == "connector-mqtt" and e["event"] == "restarted" for e in on_disk["supervisor_events"])
    assert "| connector-mqtt | yes |" in path.with_suffix(".md").read_text()
    # the rollup tables, refreshed by the sink's clean stop, hold exactly what raw holds (adr/0114)
    for grain in ("1m", "1h"):
        summary = on_disk["rollups"]["summary"][grain]
        assert "error" not in summary and summary["difference"] == 0, (grain, summary)


def test_rollup_differences_go_to_the_component_killed_during_or_just_after_their_bucket():
    from fleetstream.bench.audit import attribute_rollups

    rounds = [{"component": "streams", "killed_at": 1_000_050.0, "segments": []},
              {"component": "kafka", "killed_at": 1_000_300.0, "segments": []}]
    rollups = {"1m": {"raw_points": 900, "rollup_points": 936,
                      "mismatched": [[1_000_020, 4, 300, 336]]},  # bucket [020, 080): the streams kill is in it
               "1h": {"error": "unknown shape"}}
    out = attribute_rollups(rollups, rounds)
    assert out["summary"]["1m"] == {"raw_points": 900, "rollup_points": 936, "difference": 36,
                                    "mismatched_buckets": 1}
    assert out["buckets"]["1m"] == [{"bucket": 1_000_020, "raw_points": 300, "rollup_points": 336,
                                     "components": ["streams"]}]
    assert rounds[0]["rollups"]["1m"] == {"mismatched_buckets": 1, "difference": 36}
    assert rounds[1]["rollups"]["1m"] == {"mismatched_buckets": 0, "difference": 0}
    assert out["summary"]["1h"] == {"error": "unknown shape"}
    assert "| streams |" in markdown({"config": {"label": "x", "devices": 1, "rate": 1, "qos": 1, "payload": "plc",
                                                 "settle_s": 1, "recover_timeout_s": 1},
                                      "rounds": [{**rounds[0], "recovered": True, "recovery_s": {}}],
                                      "rollups": out, "delivery": {}})
