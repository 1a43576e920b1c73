"""A site operator runs ``fleetstream connector run modbus --config site.yaml`` as its own process: it
reads the registry, polls the PLC, publishes readings, delivers a write command, and stops cleanly on
SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import yaml

from fleetstream.stack.supervisor import settings_env
from schemas import topics
from tests.connectors.modbus.test_modbus_connector import PORT, Plc
from tests.connectors.support import LoopThread, new_tenant_id, publish_command, records, register_device


def test_the_connector_process_polls_writes_and_stops_cleanly(infra, settings, tmp_path):
    loop = LoopThread("modbus-cli")
    plc = Plc(loop)
    plc.start()
    tenant = new_tenant_id()
    register_device(settings.bootstrap_servers, tenant, "tank-1")
    site = {"site_id": f"cli-{tenant[:8]}", "tenant_id": tenant, "gateways": [
        {"host": "127.0.0.1", "port": PORT, "devices": [
            {"device_id": "tank-1", "unit_id": 2, "interval_s": 0.5, "points": [
                {"metric": "level", "address": 20, "type": "uint16", "scale": 0.5, "unit": "cm"},
                {"metric": "valve", "address": 21, "type": "uint16", "writable": True}]}]}]}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(site))
    plc.write(2, 20, [84])
    env = {**os.environ, **settings_env(settings), "FLEETSTREAM_METRICS_PORT": "0"}
    with open(tmp_path / "connector.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fleetstream.cli", "connector", "run", "modbus", "--config",
                                 str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rec = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                      lambda r: r["tenant_id"] == tenant and r["device_id"] == "tank-1", timeout=60)
        assert rec and rec[0]["values"] == {"level": 42.0, "valve": 0.0}, (tmp_path / "connector.log").read_text()
        cid = publish_command(settings.bootstrap_servers, tenant, "tank-1", json.dumps({"valve": 1}),
                              protocol="modbus")
        ack = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name, lambda r: r["command_id"] == cid,
                      timeout=60)
        assert ack and ack[0]["status"] == "SUCCEEDED"
        assert plc.read(2, 21, 1) == [1]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        plc.stop()
        loop.close()
