"""The README's "For data engineers" example runs as written against the test stack and prints the readings
the platform wrote, each on the partition Java's partitioner picks for its key (adr/0141, 0142)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from schemas import codec, device_key, topics
from schemas.partitioner import partition_for

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- data-engineer-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "the README lost its data-engineer example"
    return m.group(1)


@pytest.mark.timeout(600)
def test_the_readme_example_prints_the_readings(infra, settings, tmp_path):
    tenant = str(uuid.uuid4())
    ts = int(time.time() * 1000)
    readings = {f"pump-{i}": 20.0 + i for i in range(4)}
    p = settings.kafka.producer()
    tc = codec("telemetry")
    for device, value in readings.items():
        p.produce(topics.TELEMETRY.name, tc.encode(
            {"tenant_id": tenant, "device_id": device, "event_time": ts, "receive_time": ts, "protocol": "mqtt",
             "values": {"flow": value}, "device_type": "pump", "tags": []}), device_key(tenant, device))
    assert p.flush(60) == 0

    script = tmp_path / "example.py"
    script.write_text(_example())
    env = {**os.environ, "KAFKA": settings.bootstrap_servers, "SCHEMA_REGISTRY_URL": settings.schema_registry_endpoint}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                       cwd=tmp_path)  # not the repo: the example needs no fleetstream code
    assert r.returncode == 0, r.stderr[-3000:]
    ours = [line.split(" ", 3) for line in r.stdout.splitlines() if line.startswith(tenant)]
    assert {key.split(":", 1)[1]: values for key, _, _, values in ours} == \
        {d: str({"flow": v}) for d, v in readings.items()}
    partitions = len(settings.kafka.admin().list_topics(topics.TELEMETRY.name, timeout=30)
                     .topics[topics.TELEMETRY.name].partitions)
    assert all(int(part) == partition_for(key.encode(), partitions) for key, part, _, _ in ours)
