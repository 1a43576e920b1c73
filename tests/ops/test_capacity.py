"""The scaling plan, from the capacity planner's point of view: the model runs, gives a row per fleet
size, never asks a consumer group for more members than partitions, grows monotonically with the fleet,
says which inputs are still placeholders, and the production Terraform and Helm values actually cover
the 500k-device row. ops/capacity.md is the script's output, not hand-edited."""

from __future__ import annotations

import json
import subprocess
import sys

import hcl2
import yaml

from .tools import ROOT

sys.path.insert(0, str(ROOT / "ops"))
import capacity  # noqa: E402


def _rows() -> list[dict]:
    out = subprocess.run([sys.executable, str(ROOT / "ops" / "capacity.py"), "--json"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return json.loads(out)["rows"]


def test_the_script_sizes_every_scale_consistently():
    rows = _rows()
    assert [r["devices"] for r in rows] == [100, 10_000, 100_000, 500_000]
    for r in rows:
        assert r["faust_workers"] <= r["kafka_partitions_per_topic"]
        assert r["sink_instances"] <= r["kafka_partitions_per_topic"]
    keys = [k for k, _ in capacity.COLUMNS if k not in ("deployment",)]
    for a, b in zip(rows, rows[1:], strict=False):
        for k in keys:
            assert b[k] >= a[k], f"{k} shrinks from {a['devices']} to {b['devices']} devices"
    assert rows[0]["deployment"].startswith("one box") and rows[-1]["emqx_nodes"] >= 3


def test_placeholders_are_named_and_every_figure_has_a_status():
    m = capacity.load()
    for section, figures in m.items():
        if section.startswith("_"):
            continue
        for key, f in figures.items():
            assert f["status"] in {"measured-here", "vendor", "to-be-measured", "assumption"}, f"{section}.{key}"
            assert f["source"], f"{section}.{key} has no source"
    page = (ROOT / "ops" / "capacity.md").read_text()
    for p in capacity.placeholders(m):
        assert f"`{p}`" in page


def test_a_slower_component_needs_more_instances():
    m = capacity.load()
    base = capacity.size(500_000, m)
    m["streams_worker"]["msgs_per_s"]["value"] /= 4
    assert capacity.size(500_000, m)["faust_workers"] > base["faust_workers"]


def test_capacity_page_is_the_scripts_output():
    expected = (ROOT / "ops" / "capacity.md.in").read_text().replace(
        "{{TABLE}}", capacity.markdown([capacity.size(n, capacity.load()) for n in capacity.SCALES], capacity.load()))
    assert (ROOT / "ops" / "capacity.md").read_text() == expected, "run: python ops/capacity.py --write ops/capacity.md"


def test_production_infrastructure_covers_the_500k_row():
    row = capacity.size(500_000, capacity.load())
    with (ROOT / "terraform" / "envs" / "production" / "main.tf").open() as fh:
        platform = hcl2.load(fh)["module"][0]['"platform"']
    assert platform["msk"]["broker_count"] >= row["kafka_brokers"]
    assert platform["clickhouse_nodes"]["min"] >= row["clickhouse_shards"] * row["clickhouse_replicas"]
    values = yaml.safe_load((ROOT / "helm" / "fleetstream" / "values.yaml").read_text())
    prod = yaml.safe_load((ROOT / "helm" / "fleetstream" / "values-production.yaml").read_text())
    assert prod["kafka"]["partitions"]["telemetry"] >= row["kafka_partitions_per_topic"]
    assert prod["streams"]["autoscaling"]["maxReplicas"] >= row["faust_workers"]
    assert prod["sink"]["autoscaling"]["maxReplicas"] >= row["sink_instances"]
    mqtt = next(c for c in values["connectors"] if c["kind"] == "mqtt")
    assert mqtt["autoscaling"]["maxReplicas"] >= row["connector_instances"]
