"""The worked examples of docs/devices/ run against the session's real stack, as a device maker would run
them, so the device contract cannot rot: the paho device (telemetry, status, a command answered, a desired
state applied and reported), the C device with libmosquitto (compiled with the machine's C compiler:
telemetry, status, a command answered), mosquitto_pub, key registration and ingest with openssl and curl, CoAP with
libcoap's and aiocoap's stock clients (token in ``?jwt=``), and the links from ``GET …/connection``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.utils.factories import wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "devices"
EXAMPLES = DOCS / "examples"


def _latest(gateway, h, device_id) -> dict:
    body = gateway.get(f"/v1/devices/{device_id}/telemetry/latest", headers=h).json()
    return {k: v["value"] for k, v in body.get("values", {}).items()}


def _run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tenant(stack, factory, gateway):
    t = factory.tenant("docs")
    return t, {"Authorization": f"Bearer {t.token(gateway)}"}


def _mqtt_env(factory, dev) -> dict[str, str]:
    return {"MQTT_HOST": factory.s.mqtt_broker_host, "MQTT_PORT": str(factory.s.mqtt_tls_port),
            "TENANT_ID": dev.tenant_id, "DEVICE_ID": dev.device_id, "CERT_DIR": str(dev.cert_dir)}


def test_the_paho_device_sends_answers_commands_and_keeps_its_shadow(tenant, factory, gateway):
    t, h = tenant
    dev = factory.device(t)
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "mqtt_device.py")], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **_mqtt_env(factory, dev), "INTERVAL_S": "1", "RUN_S": "120"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        wait_for(lambda: "connected\n" in lines, timeout=30, what=f"the example to connect: {lines}")
        wait_for(lambda: "temperature" in _latest(gateway, h, dev.device_id), timeout=60, what="its readings")
        wait_for(lambda: gateway.get(f"/v1/devices/{dev.device_id}", headers=h).json()["online"], timeout=60,
                 what="the device online from its status message")
        r = gateway.post(f"/v1/devices/{dev.device_id}/commands", json={"name": "reboot", "params": {"delay_s": 1}},
                         headers=h)
        assert r.status_code == 202, r.text
        cid = r.json()["command_id"]
        wait_for(lambda: gateway.get(f"/v1/devices/{dev.device_id}/commands/{cid}", headers=h).json().get("status")
                 == "succeeded", timeout=60, what="the command answered")
        assert gateway.patch(f"/v1/devices/{dev.device_id}/shadow/desired", json={"setpoint": 23.5},
                             headers=h).status_code == 200
        wait_for(lambda: gateway.get(f"/v1/devices/{dev.device_id}/shadow", headers=h).json()
                 .get("reported", {}).get("setpoint") == 23.5, timeout=60, what="the desired state reported back")
        wait_for(lambda: _latest(gateway, h, dev.device_id).get("setpoint") == 23.5, timeout=60,
                 what="readings carrying the new setpoint")
    finally:
        proc.terminate()
        proc.wait(10)
    assert "command reboot {'delay_s': 1}\n" in lines and "shadow delta applied: {'setpoint': 23.5}\n" in lines


@pytest.mark.skipif(shutil.which("cc") is None or not Path("/usr/include/mosquitto.h").exists(),
                    reason="a C compiler and libmosquitto-dev (installed by make setup) are needed")
def test_the_libmosquitto_c_device_sends_and_answers_a_command(tenant, factory, gateway, tmp_path):
    t, h = tenant
    dev = factory.device(t)
    exe = tmp_path / "mqtt_device"
    built = _run(["cc", "-Wall", "-Wextra", "-Werror", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-o", str(exe),
                  str(EXAMPLES / "mqtt_device.c"), "-lmosquitto"], {})
    assert built.returncode == 0, built.stderr
    proc = subprocess.Popen([str(exe)], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **_mqtt_env(factory, dev), "INTERVAL_S": "1", "RUN_S": "120"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        wait_for(lambda: "connected\n" in lines, timeout=30, what=f"the C example to connect: {lines}")
        wait_for(lambda: {"temperature", "uptime_s"} <= set(_latest(gateway, h, dev.device_id)), timeout=60,
                 what="its readings")
        wait_for(lambda: gateway.get(f"/v1/devices/{dev.device_id}", headers=h).json()["online"], timeout=60,
                 what="the device online from its status message")
        r = gateway.post(f"/v1/devices/{dev.device_id}/commands", json={"name": "reboot", "params": {"delay_s": 1}},
                         headers=h)
        assert r.status_code == 202, r.text
        cid = r.json()["command_id"]
        wait_for(lambda: gateway.get(f"/v1/devices/{dev.device_id}/commands/{cid}", headers=h).json().get("status")
                 == "succeeded", timeout=60, what=f"the command answered: {lines}")
        assert gateway.get(f"/v1/devices/{dev.device_id}/commands/{cid}", headers=h).json().get("result") == \
            {"done": "reboot"}
    finally:
        proc.terminate()
        proc.wait(10)
    assert "command reboot\n" in lines and not any(x.startswith("refused") for x in lines), lines


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto_pub (mosquitto-clients) not installed")
def test_the_mosquitto_pub_example(tenant, factory, gateway):
    t, h = tenant
    dev = factory.device(t)
    out = _run(["sh", str(EXAMPLES / "mqtt_device.sh")], _mqtt_env(factory, dev))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: _latest(gateway, h, dev.device_id) == {"temperature": 22.5, "fan": True}, timeout=60,
             what="the reading mosquitto_pub sent")


@pytest.fixture(scope="module")
def keyed_device(tenant, gateway, settings, tmp_path_factory):
    """A device registered over the API whose ES256 key register_key.sh made and registered."""
    t, h = tenant
    assert gateway.post("/v1/devices", json={"device_id": "edge-sh-1"}, headers=h).status_code == 201
    key = tmp_path_factory.mktemp("device") / "device.key"
    env = {"FLEETSTREAM_URL": str(gateway.base_url).rstrip("/"), "TENANT_TOKEN": h["Authorization"][7:],
           "TENANT_ID": t.tenant_id, "DEVICE_ID": "edge-sh-1", "DEVICE_KEY": str(key)}
    out = _run(["sh", str(EXAMPLES / "register_key.sh")], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["key_id"]
    return env


def test_the_openssl_jwt_and_curl_ingest_example(keyed_device, tenant, gateway):
    _t, h = tenant
    for _ in range(5):  # fresh tokens each time: single use, and signatures of every length encode right
        out = _run(["sh", str(EXAMPLES / "http_device.sh")], keyed_device)
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout) == {"accepted": 1, "rejected": []}
    wait_for(lambda: _latest(gateway, h, "edge-sh-1").get("temperature") == 21.5, timeout=60, what="HTTP reading")


@pytest.mark.skipif(shutil.which("coap-client-notls") is None, reason="coap-client-notls (libcoap3-bin) not installed")
def test_libcoap_coap_client_sends_with_the_token_in_option_65000(keyed_device, tenant, gateway, settings):
    _t, h = tenant
    env = {**keyed_device, "COAP_HOST": "127.0.0.1", "COAP_PORT": str(settings.coap_port)}
    out = wait_for(lambda: (lambda o: o if o.returncode == 0 and "accepted" in o.stdout else None)(
        _run(["sh", str(EXAMPLES / "coap_device.sh")], env, timeout=60)), timeout=90, interval=2,
        what="the CoAP connector of the stack answering")
    assert json.loads(out.stdout) == {"accepted": 1, "rejected": 0}
    wait_for(lambda: _latest(gateway, h, "edge-sh-1").get("humidity") == 41.0, timeout=60, what="CoAP reading")


def test_aiocoap_client_sends_with_the_token_in_the_query_and_a_missing_token_is_explained(keyed_device, tenant,
                                                                                          gateway, settings):
    _t, h = tenant
    client = str(Path(sys.executable).with_name("aiocoap-client"))
    token = _run(["sh", str(EXAMPLES / "device_jwt.sh"), keyed_device["TENANT_ID"], "edge-sh-1",
                  keyed_device["DEVICE_KEY"]], {}).stdout.strip()
    query = "&".join(f"jwt={token[i:i + 250]}" for i in range(0, len(token), 250))
    url = f"coap://127.0.0.1:{settings.coap_port}/telemetry"
    body = ["-m", "POST", "--content-format", "application/json", "--payload", '{"values": {"pressure": 1.5}}']
    out = _run([client, *body, f"{url}?{query}"], {}, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == {"accepted": 1, "rejected": 0}, out.stdout + out.stderr
    wait_for(lambda: _latest(gateway, h, "edge-sh-1").get("pressure") == 1.5, timeout=60, what="aiocoap reading")
    refused = _run([client, *body, url], {}, timeout=60)
    assert "4.01" in refused.stdout + refused.stderr and "jwt=" in refused.stdout + refused.stderr


def test_the_coap_connector_of_the_stack_listens_on_its_udp_port_only(stack, settings):
    import psutil

    child = next(c for c in stack.children if c.name == "connector-coap")
    conns = psutil.Process(child.pid).net_connections(kind="inet")
    # TCP listeners and unconnected UDP sockets (a connected one, e.g. a DNS lookup's, serves no peer)
    listening = sorted({(c.type.name, c.laddr.port) for c in conns
                        if c.status == psutil.CONN_LISTEN or (c.type.name == "SOCK_DGRAM" and not c.raddr)})
    allowed = {("SOCK_DGRAM", settings.coap_port)}
    if settings.metrics_port:  # the documented metrics port of the role (adr/0094), when metrics are on
        allowed.add(("SOCK_STREAM", settings.metrics_port + 5))
    assert set(listening) <= allowed and ("SOCK_DGRAM", settings.coap_port) in listening, listening


def test_the_connection_details_link_to_these_pages(tenant, gateway):
    _t, h = tenant
    gateway.post("/v1/devices", json={"device_id": "linked-1"}, headers=h)
    docs = gateway.get("/v1/devices/linked-1/connection", headers=h).json()["docs"]
    for name, path in docs.items():
        assert (ROOT / path).exists(), (name, path)
    assert {"mqtt", "http", "coap", "device_jwt", "provisioning", "examples"} <= set(docs)
