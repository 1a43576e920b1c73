"""The scaling table's arithmetic: gross CPU per message from the step's mean CPU, and rows that survive a
report without registration, WebSocket or idle figures."""

from __future__ import annotations

from fleetstream.bench.scaling_table import cost_table, resource_table


def _report(**over) -> dict:
    step = {"cpu_us_per_msg": {"streams": 60.0, "gateway": 40.0, "load-generator": 30.0, "bench-probes": 5.0},
            "resources": {"streams": {"cpu_pct_mean": 10.0}, "gateway": {"cpu_pct_mean": 5.0},
                          "load-generator": {"cpu_pct_mean": 50.0}},
            "accepted_msg_s": 1000, "machine_cpu_pct": 50.0, "load_avg": [2.0, 1.0, 1.0],
            "latency_ms": {"publish_to_websocket": None, "publish_to_queryable": {"count": 3, "p50": 10.0, "p99": 20.0}}}
    r = {"config": {"devices": 100, "registered": 0, "tenants": 3}, "steps": [step], "load_avg_start": [1.0, 1, 1],
         "load_avg_end": [3.0, 1, 1], "provisioning": {"seconds": 1.0, "devices_per_s": 100.0, "tenants_seconds": 0.5},
         "sessions": {"connect_s": 2.0}, "resources_whole_run": {"streams": {"peak_rss_mb": 99.0}},
         "resources_timeline": [{"rss_mb": {"streams": 90.0}}], "delivery": {"lost_points": 0, "duplicated_in_query": 0}}
    r.update(over)
    return r


def test_cost_row_sums_the_platform_only_and_computes_gross_from_mean_cpu():
    header, sep, row = cost_table([("A", _report())])
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(header.strip("|").split("|")) == sep.count("---")
    assert cells[:4] == ["A", "3", "100", "100"]
    # marginal: streams + gateway (generator and probes are not the platform); gross: (10 + 5) % of a core / 1000 msg/s
    assert "100 | 150 | 30" in row
    assert "–/– (None)" in row and "10/20 (3)" in row


def test_resource_row_reads_rss_before_load_and_peak():
    _, _, row = resource_table([("A", _report())])
    assert "| 90 / 99 |" in row and "| 0.5 | 1.0 (100.0) | – (–) | 2.0 |" in row and "| 0/0 |" in row
