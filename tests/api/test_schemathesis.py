"""schemathesis against the gateway's own ``/openapi.json`` on the real test stack, with a real tenant token
(adr/0109): the examples, coverage and fuzzing phases, a fixed case budget and seed so a run is bounded
and reproducible. Every response must be a documented status code with the documented content type and
schema, and never a 5xx, and every operation of the document gets cases. A failure prints schemathesis'
report with a curl command per finding. The coverage phase sends a rule's nested conditions one level
deep, not four (tests/api/schemathesis_hooks.py, adr/0198)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).parent
# fuzzing cases per operation; the coverage phase adds every case the schema defines (~3,200 since adr/0198;
# POST /v1/rules ~1,250 of them, ~4,300 before its nesting was bounded). 5 per commit (adr/0196): fuzzing
# cost ~0.15 s a case against ~0.03 s for coverage, so 15 made half the run.
# FLEETSTREAM_SCHEMATHESIS_MAX_EXAMPLES=50 (or more) is the deeper run.
MAX_EXAMPLES = int(os.environ.get("FLEETSTREAM_SCHEMATHESIS_MAX_EXAMPLES", "5"))
SEED = 19
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# left out of the run by tests/api/schemathesis.toml: the never-ending server-sent events
NOT_RUN = ("/events",)
# cases the coverage phase sends to POST /v1/rules with its nesting bounded (~1,230 at 4.32.5): fewer means the
# hook (or a schemathesis upgrade) cut more than the levels below one
RULES_COVERAGE_AT_LEAST = 1_000


@pytest.fixture(scope="module")
def tenant_token(stack, factory, gateway):
    t = factory.tenant("schemathesis")
    token = t.token(gateway)
    h = {"Authorization": f"Bearer {token}"}
    # the documents' own examples name these, so the run reaches existing resources too, not only 404s
    for device_id, device_type in (("boiler-17", "boiler"), ("meter-1", "meter"), ("meter-2", "meter")):
        assert gateway.post("/v1/devices", headers=h, json={"device_id": device_id,
                                                             "device_type": device_type}).status_code == 201
    return token


def test_the_api_answers_as_documented_and_never_with_a_server_error(tenant_token, settings, gateway, tmp_path):
    url = f"http://{settings.host}:{settings.gateway_port}/openapi.json"
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"), "run", url,
           "-H", f"Authorization: Bearer {tenant_token}", "--phases", "examples,coverage,fuzzing",
           "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--checks", CHECKS, "--workers", "2",
           "--request-timeout", "60", "--wait-for-schema", "60", "--generation-database", "none",
           "--report", "ndjson", "--report-dir", str(tmp_path), "--no-color"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py")}
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started
    cases = _count_cases(tmp_path)
    total = sum(cases.values())
    print(f"schemathesis: {total} cases in {elapsed:.0f} s;",
          ", ".join(f"{phase} {label} {n}" for (phase, label), n in cases.most_common(5)))
    report = f"{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    documented = _operations(gateway.get("/openapi.json").json())
    run = {label for _, label in cases}
    assert documented - run == set(), f"operations without a case: {sorted(documented - run)}\n{report}"
    rules = sum(n for (phase, label), n in cases.items() if (phase, label) == ("coverage", "POST /v1/rules"))
    assert rules >= RULES_COVERAGE_AT_LEAST, f"POST /v1/rules got only {rules} coverage cases\n{report}"
    assert proc.returncode == 0, f"{proc.stdout[-20000:]}\n{proc.stderr[-3000:]}"


def _operations(doc: dict) -> set[str]:
    """The document's operations as schemathesis labels them, less those the run leaves out."""
    return {f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch") and not path.endswith(NOT_RUN)}


def _count_cases(report_dir: Path) -> Counter:
    """Cases per (phase, operation) in the ndjson report."""
    cases: Counter = Counter()
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line).get("ScenarioFinished")
            if event:
                recorder = event.get("recorder", {})
                cases[(event.get("phase"), recorder.get("label"))] += len(recorder.get("cases", {}))
    return cases
