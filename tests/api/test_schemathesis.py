"""schemathesis against the gateway's own ``/openapi.json`` on the real test stack, with a real tenant token
(adr/0109): the examples, coverage and fuzzing phases, a fixed case budget and seed so a run is bounded
and reproducible. Every response must be a documented status code with the documented content type and
schema, and never a 5xx. A failure prints schemathesis' report with a curl command per finding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
# fuzzing cases per operation; the coverage phase adds every case the schema defines (~6,200, POST /v1/rules
# ~4,300 of them). 5 per commit (adr/0196): fuzzing cost ~0.15 s a case against ~0.03 s for coverage, so 15
# made half the run. FLEETSTREAM_SCHEMATHESIS_MAX_EXAMPLES=50 (or more) is the deeper run.
MAX_EXAMPLES = int(os.environ.get("FLEETSTREAM_SCHEMATHESIS_MAX_EXAMPLES", "5"))
SEED = 19
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


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


def test_the_api_answers_as_documented_and_never_with_a_server_error(tenant_token, settings, tmp_path):
    url = f"http://{settings.host}:{settings.gateway_port}/openapi.json"
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"), "run", url,
           "-H", f"Authorization: Bearer {tenant_token}", "--phases", "examples,coverage,fuzzing",
           "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--checks", CHECKS, "--workers", "2",
           "--request-timeout", "60", "--wait-for-schema", "60", "--generation-database", "none",
           "--report", "ndjson", "--report-dir", str(tmp_path), "--no-color"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    elapsed = time.monotonic() - started
    cases = _count_cases(tmp_path)
    print(f"schemathesis: {cases} cases in {elapsed:.0f} s")
    assert cases > 5_000, f"schemathesis ran only {cases} cases:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    assert proc.returncode == 0, f"{proc.stdout[-20000:]}\n{proc.stderr[-3000:]}"


def _count_cases(report_dir: Path) -> int:
    cases = 0
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if "ScenarioFinished" in event:
                cases += len(event["ScenarioFinished"].get("recorder", {}).get("cases", {}))
    return cases
