"""The README's examples run against the real stack (issue 20): every fenced block marked ``sh runnable``
runs in bash (errexit, pipefail) with GATEWAY, CLIENT_ID, CLIENT_SECRET and DEVICE set for a tenant whose
device has published readings; every command must succeed (curl -f: an HTTP error fails it; the GraphQL
call asserts no errors). A README example naming a field or route that does not exist fails here."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from schemas.namespace import device_topics
from tests.utils.factories import publish_json, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)


def runnable_blocks(text: str) -> list[str]:
    return [m["body"] for m in FENCE.finditer(text) if m["info"].split()[:2] == ["sh", "runnable"]]


def test_the_readme_has_runnable_blocks_and_the_extractor_finds_only_those():
    assert runnable_blocks("```sh\nfalse\n```\n```sh runnable\ntrue\n```\n") == ["true\n"]
    assert len(runnable_blocks(README.read_text())) >= 1


@pytest.fixture(scope="module")
def env(stack, factory, gateway, settings):
    t = factory.tenant("readme")
    dev = factory.device(t, device_type="boiler")
    client = factory.mqtt_client(dev)
    now = int(time.time() * 1000)
    publish_json(client, device_topics(t.tenant_id, dev.device_id)["telemetry"],
                 [{"ts": now - (5 - i) * 1000, "values": {"temperature": 20.0 + i}} for i in range(5)])
    client.disconnect()
    h = {"Authorization": f"Bearer {t.token(gateway)}"}
    wait_for(lambda: len(gateway.get(f"/v1/devices/{dev.device_id}/telemetry", headers=h,
                                     params={"metric": "temperature"}).json().get("points", [])) == 5,
             timeout=60, what="the readings stored")
    return {**os.environ, "GATEWAY": f"http://{settings.host}:{settings.gateway_port}", "CLIENT_ID": t.client_id,
            "CLIENT_SECRET": t.client_secret, "DEVICE": dev.device_id}


@pytest.mark.parametrize("index", range(len(runnable_blocks(README.read_text()))))
def test_a_runnable_readme_block_succeeds(env, index):
    block = runnable_blocks(README.read_text())[index]
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"README block {index} failed ({r.returncode}):\n{block}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert env["DEVICE"] in r.stdout and '"points"' in r.stdout
