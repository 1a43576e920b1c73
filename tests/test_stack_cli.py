"""An SRE's view of the local stack: `up --detach` returns when healthy, `status --json` tells every
component's state and address, `down` leaves no process behind; the admin bootstrap prints JSON."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import httpx
import pytest

from fleetstream.stack.supervisor import pid_alive
from runtime.settings import Settings
from tests.conftest import PORT_OFFSET
from tests.utils.factories import wait_for

# Below 32768: Linux hands out 32768-60999 as ephemeral source ports, so a listener there can find its port
# taken by any outgoing connection on a busy machine (seen: streams web port 38090 "address already in use").
PORTS = {k: str(v + PORT_OFFSET) for k, v in {
    "FLEETSTREAM_KAFKA_PORT": 27092, "FLEETSTREAM_KAFKA_CONTROLLER_PORT": 27093,
    "FLEETSTREAM_MQTT_TLS_PORT": 26883, "FLEETSTREAM_POSTGRES_PORT": 27432,
    "FLEETSTREAM_GATEWAY_PORT": 26080, "FLEETSTREAM_SCHEMA_REGISTRY_PORT": 26081,
    "FLEETSTREAM_STREAMS_WEB_PORT": 26090, "FLEETSTREAM_COAP_PORT": 26084}.items()}


def fleetstream(*args, env, timeout=200):
    return subprocess.run([sys.executable, "-m", "fleetstream.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def stack_env(tmp_path):
    return {**os.environ, **PORTS, "FLEETSTREAM_DATA_DIR": str(tmp_path / "data")}


def test_up_detach_status_down_leaves_no_orphans(stack_env, tmp_path):
    """Also the README's promise: with the demo fleet, the printed curl (metric=temperature) returns points."""
    up = fleetstream("up", "--detach", "--with-fleet", "--devices", "2", env=stack_env)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        st = fleetstream("status", "--json", env=stack_env)
        status = json.loads(st.stdout)
        comps = status["components"]
        assert status["running"] is True
        for name in ("kafka", "schema-registry", "mosquitto", "postgres", "gateway", "clickhouse", "streams",
                     "connector-mqtt"):
            assert comps[name]["state"] == "up", (name, comps[name])
        assert comps["gateway"]["url"] == f"http://localhost:{PORTS['FLEETSTREAM_GATEWAY_PORT']}"
        assert comps["mosquitto"]["mqtt_tls"] == f"mqtts://localhost:{PORTS['FLEETSTREAM_MQTT_TLS_PORT']}"
        assert comps["kafka"]["bootstrap"] == f"127.0.0.1:{PORTS['FLEETSTREAM_KAFKA_PORT']}"
        registry = f"http://127.0.0.1:{PORTS['FLEETSTREAM_SCHEMA_REGISTRY_PORT']}/apis/ccompat/v7"
        assert comps["schema-registry"]["url"] == registry
        assert "Schemas     " + registry in up.stdout  # printed beside Kafka
        assert st.returncode == 0

        created = fleetstream("admin", "create-tenant", "cli-tenant", "--json", env=stack_env, timeout=60)
        tenant = json.loads(created.stdout)
        assert tenant["name"] == "cli-tenant" and tenant["client_id"].startswith("fsc_") and tenant["client_secret"]
        state_file = tmp_path / "data" / "stack.json"
        state = json.loads(state_file.read_text())
        # the supervisor's state names pids and settings, never a secret one, and only its owner reads it
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        assert not set(state["settings"]) & {f"FLEETSTREAM_{k.upper()}" for k in Settings.secret_fields()}
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) & 0o007 == 0

        demo = json.loads((tmp_path / "data" / "demo" / "fleet.json").read_text())
        with httpx.Client(base_url=comps["gateway"]["url"].replace("localhost", "127.0.0.1"), timeout=10) as gw:
            tok = gw.post("/v1/oauth/token", data={"grant_type": "client_credentials", "client_id": demo["client_id"],
                                                   "client_secret": demo["client_secret"]}).json()["access_token"]
            dev = demo["devices"][0]["device_id"]
            wait_for(lambda: gw.get(f"/v1/devices/{dev}/telemetry", params={"metric": "temperature"},
                                    headers={"Authorization": f"Bearer {tok}"}).json().get("points"),
                     timeout=60, what="the demo fleet's temperature readings")
            # the console's address and its first user, printed by up, sign in (issue 17)
            owner = demo["console_user"]
            assert f"{comps['gateway']['url']}/console/?tenant={demo['name']}" in up.stdout
            assert f"sign in as {owner['email']} / {owner['password']}" in up.stdout
            assert gw.get("/console/").status_code == 200
            signed_in = gw.post("/v1/session", json={"tenant": demo["name"], "email": owner["email"],
                                                     "password": owner["password"]}, timeout=90)
            assert signed_in.status_code == 200 and signed_in.json()["role"] == "owner"
    finally:
        down = fleetstream("down", env=stack_env, timeout=90)
    assert down.returncode == 0
    pids = [state["supervisor_pid"], *state["children"].values()]
    assert not [p for p in pids if pid_alive(p)], "processes left behind after down"
    after = json.loads(fleetstream("status", "--json", env=stack_env).stdout)
    assert after["running"] is False and after["components"]["kafka"]["state"] == "down"
