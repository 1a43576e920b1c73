"""Alerting, from the on-call SRE's point of view: every alert that can page must parse as Prometheus
rules, carry a severity and a summary, reference only series that fleetstream actually exports, and link
a runbook that exists in ops/runbooks/; every SLO in ops/slo.md has an alert that burns its budget."""

from __future__ import annotations

import re

import yaml

from runtime import observability

from .tools import ROOT

RULES = ROOT / "ops" / "alerts" / "fleetstream-rules.yaml"
RUNBOOK_URL = re.compile(r"^https://github\.com/[^/]+/[^/]+/blob/main/(ops/runbooks/[a-z0-9-]+\.md)$")
EXTERNAL_SERIES = {"up"}  # Prometheus' own


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _exported_series() -> set[str]:
    names = set()
    for m in [v for v in vars(observability).values() if hasattr(v, "_name") and hasattr(v, "_type")]:
        base = m._name
        if m._type == "counter":
            names |= {f"{base}_total"}
        elif m._type == "histogram":
            names |= {f"{base}_bucket", f"{base}_count", f"{base}_sum"}
        else:
            names.add(base)
    return names


def test_every_alert_has_severity_summary_and_an_existing_runbook():
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) >= 8
    for a in alerts:
        assert a["labels"]["severity"] in {"page", "ticket"}, a["alert"]
        assert a["annotations"]["summary"], a["alert"]
        m = RUNBOOK_URL.match(a["annotations"]["runbook_url"])
        assert m, f"{a['alert']}: runbook_url {a['annotations']['runbook_url']!r} is not a repo link"
        path = ROOT / m.group(1)
        assert path.is_file(), f"{a['alert']}: {m.group(1)} missing"
        assert a["alert"] in path.read_text(), f"{m.group(1)} does not describe {a['alert']}"
    assert len({a["annotations"]["runbook_url"] for a in alerts}) == len(alerts), "one runbook per alert"


def test_rules_use_only_series_fleetstream_exports_or_records():
    exported = _exported_series() | EXTERNAL_SERIES | {r["record"] for r in _rules() if "record" in r}
    for r in _rules():
        used = set(re.findall(r"\b((?:fleetstream[_:][a-z0-9_:]+)|up)\b(?=\s*[{\[)]|\s*[=<>])", r["expr"]))
        unknown = used - exported
        assert not unknown, f"{r.get('alert') or r.get('record')}: unknown series {unknown}"


def test_each_slo_has_a_burn_rate_alert_and_a_stated_budget():
    slo_doc = (ROOT / "ops" / "slo.md").read_text()
    slos = {r["labels"]["slo"] for r in _rules() if "alert" in r and "slo" in r.get("labels", {})}
    assert slos == {"ingest-availability", "e2e-latency", "command-success"}
    for slo in slos:
        assert f"`{slo}`" in slo_doc, f"ops/slo.md does not define {slo}"
    assert "error budget" in slo_doc.lower()


def test_dashboard_panels_query_series_that_exist():
    import json

    dash = json.loads((ROOT / "ops" / "dashboards" / "fleetstream-overview.json").read_text())
    exported = _exported_series() | {r["record"] for r in _rules() if "record" in r}
    titles = set()
    for panel in dash["panels"]:
        titles.add(panel["title"])
        for t in panel["targets"]:
            used = set(re.findall(r"\b(fleetstream[_:][a-z0-9_:]+)", t["expr"]))
            assert used and used <= exported, f"{panel['title']}: {used - exported}"
    assert len(titles) == len(dash["panels"]) >= 10
