"""Safe defaults for production (issue 19, adr/0112): `FLEETSTREAM_ENV=prod` refuses generated keys and the
default database password with an error naming the setting; the master key is kept apart from the keys it
seals; no secret lands in a file other users can read; the streams worker's web port is loopback-only and
answers only with its token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from fleetstream.stack.supervisor import pid_alive
from gateway.auth.tokens import KeyRing
from gateway.identity.secrets import FileKeyStore, master_key_from_settings
from runtime import production
from runtime.pki import PlatformPKI
from runtime.settings import Settings
from streams.app import web_auth_headers, web_options
from tests.conftest import PORT_OFFSET

# below the ephemeral port range, clear of the other suites (see tests/stack/test_recovery.py)
PORTS = {k: str(v + PORT_OFFSET) for k, v in {
    "FLEETSTREAM_KAFKA_PORT": 12692, "FLEETSTREAM_KAFKA_CONTROLLER_PORT": 12693,
    "FLEETSTREAM_MQTT_TLS_PORT": 12683, "FLEETSTREAM_POSTGRES_PORT": 12632,
    "FLEETSTREAM_GATEWAY_PORT": 12680, "FLEETSTREAM_STREAMS_WEB_PORT": 12690,
    "FLEETSTREAM_SCHEMA_REGISTRY_PORT": 12681, "FLEETSTREAM_COAP_PORT": 12684}.items()}
MASTER_KEY = "m" * 20 + "-prod-master-key-from-the-secrets-manager"
APP_PASSWORD = "app-password-from-the-secrets-manager"


def fleetstream(*args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "fleetstream.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _prod_env(data: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETSTREAM_")}
    return {**env, **PORTS, "FLEETSTREAM_ENV": "prod", "FLEETSTREAM_DATA_DIR": str(data), **extra}


@pytest.mark.parametrize("command", [["run", "gateway"], ["up"], ["admin", "create-tenant", "x"],
                                     ["admin", "create-platform-token"]])
def test_prod_refuses_to_start_on_generated_keys_and_the_default_password(tmp_path, command):
    out = fleetstream(*command, env=_prod_env(tmp_path / "data"), timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr
    assert "FLEETSTREAM_ENV=prod refuses to start" in err
    if command[-1] != "create-platform-token":
        assert "FLEETSTREAM_POSTGRES_APP_PASSWORD" in err and "FLEETSTREAM_SECRETS_MASTER_KEY" in err
    if command == ["up"]:
        assert "ca.key" in err
    if command[0] != "admin" or command[-1] == "create-platform-token":
        assert "keys/jwt" in err
    assert not (tmp_path / "data" / "keys" / "jwt").exists(), "a signing key was generated anyway"
    assert not (tmp_path / "data" / "pki" / "ca.key").exists(), "a CA was generated anyway"


def test_prod_master_key_file_must_be_outside_the_data_dir_private_and_long(tmp_path):
    data = tmp_path / "data"
    inside = data / "secrets" / "master.key"
    inside.parent.mkdir(parents=True)
    inside.write_text(MASTER_KEY)
    inside.chmod(0o600)
    assert "inside the data dir" in " ".join(production.problems(
        Settings(env="prod", data_dir=data, secrets_master_key_file=inside), "admin"))

    outside = tmp_path / "mounted" / "master.key"
    outside.parent.mkdir()
    outside.write_text(MASTER_KEY)
    outside.chmod(0o644)
    s = Settings(env="prod", data_dir=data, secrets_master_key_file=outside)
    assert "readable by other users" in " ".join(production.problems(s, "admin"))
    outside.chmod(0o400)
    assert not [p for p in production.problems(s, "admin") if "MASTER_KEY" in p]
    assert master_key_from_settings(s) == MASTER_KEY.encode()
    short = Settings(env="prod", data_dir=data, secrets_master_key="too-short")
    assert "shorter than" in " ".join(production.problems(short, "admin"))
    assert production.problems(Settings(env="dev", data_dir=data), "gateway") == []


def test_dev_master_key_is_generated_beside_the_data_dir_not_in_it(tmp_path):
    data = tmp_path / "data"
    s = Settings(data_dir=data)
    legacy = data / "keys" / "master.key"  # where data dirs before adr/0112 kept it
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"legacy-master-key-0123456789")
    sealed_before = FileKeyStore(data / "keys" / "sealed", legacy.read_bytes())
    sealed_before.put("tenant-ca/t1", b"secret")

    key = master_key_from_settings(s)
    assert key == b"legacy-master-key-0123456789" and not legacy.exists()
    assert s.master_key_path == tmp_path / "data.master.key" and not s.master_key_path.is_relative_to(data)
    assert stat.S_IMODE(s.master_key_path.stat().st_mode) == 0o600
    assert FileKeyStore(data / "keys" / "sealed", key).get("tenant-ca/t1") == b"secret"
    assert not any(p.name.endswith(".key") for p in data.rglob("*")), "a master key left in the data dir"


def test_streams_web_port_is_loopback_with_a_token_and_off_without_one():
    exposed = Settings(host="0.0.0.0", streams_web_token="t0ken")
    opts = web_options(exposed)
    assert opts["web_bind"] == "127.0.0.1" and opts["web_enabled"]
    assert not opts["web_tables_enabled"] and not opts["web_router_enabled"]
    assert web_options(Settings(host="0.0.0.0"))["web_enabled"] is False


def _secrets_in(path: Path, values: list[bytes]) -> list[str]:
    try:
        body = path.read_bytes()
    except OSError:
        return []
    found = [v.decode() for v in values if v in body]
    return found + (["a private key"] if b"PRIVATE KEY" in body else [])


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_prod_stack_writes_no_secret_where_others_can_read_it(tmp_path):
    """The operator provides the root CA, a signing key, the master key (in the environment) and the app
    password; the stack starts, and nothing under the data dir gives any of them to another user."""
    data = tmp_path / "data"
    PlatformPKI(data / "pki").ensure(broker_sans=["localhost", "127.0.0.1"])  # the operator's CA
    KeyRing(data / "keys" / "jwt")  # the operator's signing key (the ring makes one when empty)
    env = _prod_env(data, FLEETSTREAM_SECRETS_MASTER_KEY=MASTER_KEY, FLEETSTREAM_POSTGRES_APP_PASSWORD=APP_PASSWORD)
    up = fleetstream("up", "--detach", env=env, timeout=400)
    state = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr[-3000:]
        state_file = data / "stack.json"
        state = json.loads(state_file.read_text())
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        owner_password = (data / "postgres" / "owner.password").read_bytes().strip()
        secrets = [MASTER_KEY.encode(), APP_PASSWORD.encode(), owner_password]
        assert not _secrets_in(state_file, secrets[:2] + [owner_password]), "stack.json holds a secret"
        assert "FLEETSTREAM_SECRETS_MASTER_KEY" not in state["settings"]

        assert stat.S_IMODE(data.stat().st_mode) & 0o007 == 0, "the data dir is open to other users"
        exposed = []
        for path in data.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o044 and _secrets_in(path, secrets):
                exposed.append(f"{path.relative_to(data)} {mode:04o} {_secrets_in(path, secrets)}")
        assert not exposed, exposed

        # the streams worker's web port: loopback only, refuses a request without its token
        streams_pid = state["children"]["streams"]
        port = int(PORTS["FLEETSTREAM_STREAMS_WEB_PORT"])
        listening = [c.laddr.ip for c in psutil.Process(streams_pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert listening == ["127.0.0.1"], listening
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/stats/", timeout=10).status_code == 401
        assert httpx.get(f"{url}/table/", timeout=10).status_code == 401
    finally:
        down = fleetstream("down", env=env, timeout=120)
    assert down.returncode == 0
    if state:
        assert not [p for p in [state["supervisor_pid"], *state["children"].values()] if pid_alive(p)]


@pytest.mark.integration
def test_streams_web_port_of_the_session_stack_needs_its_token(stack, settings):
    url = f"http://{settings.host}:{settings.streams_web_port}"
    assert httpx.get(f"{url}/stats/", timeout=10).status_code == 401
    assert httpx.get(f"{url}/stats/", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.get(f"{url}/stats/", headers=web_auth_headers(settings), timeout=10).status_code == 200
    assert httpx.get(f"{url}/table/", headers=web_auth_headers(settings), timeout=10).status_code == 404
