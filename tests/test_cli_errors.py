"""The CLI as a first-time operator meets it: tenants by name or id, and a mistake answered with one line
saying what to do, never a traceback (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from fleetstream.stack.supervisor import settings_env


def fleetstream(*args, env, timeout=200):
    return subprocess.run([sys.executable, "-m", "fleetstream.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def env(infra, settings):
    return {**os.environ, **settings_env(settings)}


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fleetstream: "), r.stderr
    return lines[0]


def test_create_device_takes_the_tenants_name_or_its_id(env):
    name = f"acme-{uuid.uuid4().hex[:8]}"
    tenant = json.loads(fleetstream("admin", "create-tenant", name, "--json", env=env).stdout)
    by_name = fleetstream("admin", "create-device", name, "boiler-1", "--json", env=env)
    assert by_name.returncode == 0, by_name.stderr
    by_id = fleetstream("admin", "create-device", tenant["tenant_id"], "boiler-2", "--json", env=env)
    assert by_id.returncode == 0, by_id.stderr
    assert {json.loads(r.stdout)["device_id"] for r in (by_name, by_id)} == {"boiler-1", "boiler-2"}
    assert {json.loads(r.stdout)["tenant_id"] for r in (by_name, by_id)} == {tenant["tenant_id"]}
    line = _one_line_error(fleetstream("admin", "create-device", name, "boiler-1", env=env))
    assert "already exists" in line
    line = _one_line_error(fleetstream("admin", "create-tenant", name, env=env))
    assert name in line


@pytest.mark.parametrize("ref", ["no-such-tenant", "6be4f77d-ffc5-4346-a918-6bdc36febb49", "' or 1=1 --"])
def test_an_unknown_tenant_is_one_line_that_says_how_to_make_one(env, ref):
    line = _one_line_error(fleetstream("admin", "create-device", ref, "d-1", env=env))
    assert repr(ref) in line and "create-tenant" in line


def test_a_stack_that_is_not_running_is_one_line_that_says_how_to_start_it(env):
    down = {**env, "FLEETSTREAM_POSTGRES_PORT": "1"}  # nothing listens there
    line = _one_line_error(fleetstream("admin", "create-tenant", "x", env=down))
    assert "PostgreSQL" in line and "fleetstream up" in line
