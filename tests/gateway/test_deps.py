"""Handlers get the gateway's components through the typed dependencies of gateway/api/deps.py (adr/0124):
no route module reads the app state, a test replaces a component with ``app.dependency_overrides``, and no
dependency shows up as an API parameter. Built from the app itself, lifespan not run; no stack needed."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from gateway.api import deps
from gateway.app import create_app
from gateway.auth.tokens import Principal
from runtime.settings import Settings

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
# the lifespan creates the state; deps.py is the one reader
STATE_OWNERS = {GATEWAY / "app.py", GATEWAY / "api" / "deps.py"}


@pytest.fixture
def app(tmp_path):
    return create_app(Settings(data_dir=tmp_path))


def test_only_the_lifespan_and_deps_module_touch_the_app_state():
    readers = [f"{p.relative_to(GATEWAY.parent)}:{n}" for p in sorted(GATEWAY.rglob("*.py")) if p not in STATE_OWNERS
               for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bapp\.state\b", line)]
    assert readers == []


def test_a_component_is_replaced_with_dependency_overrides(app):
    alert = {"alert_id": "a1", "rule_id": "r1", "device_id": "d1", "severity": "MAJOR", "state": "ACTIVE",
             "time": 1, "message": "hot", "details_json": "{}"}
    app.dependency_overrides[deps.get_principal] = lambda: Principal("t1", "c1", frozenset({"devices:read"}))
    app.dependency_overrides[deps.get_streams] = lambda: SimpleNamespace(
        tenant_alerts=lambda tenant: [alert] if tenant == "t1" else [])
    r = TestClient(app).get("/v1/alerts")
    assert r.status_code == 200, r.text
    assert [a["alert_id"] for a in r.json()["data"]] == ["a1"]


def test_liveness_reads_the_components_the_app_state_holds(app):
    dead = threading.Thread(target=lambda: None, name="sink-x")
    dead.start()
    dead.join()
    client = TestClient(app)
    assert client.get("/healthz").json() == {"status": "ok"}
    app.state.sinks = [dead]
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["dead_threads"] == ["sink-x"]


def test_no_dependency_becomes_an_api_parameter(app):
    injected = {"conn", "s", "db", "keys", "admin", "pki", "auth_state", "outbox", "clickhouse", "store", "sink",
                "streams", "ota", "hub", "components", "kafka_admin", "svc"}
    params = {(path, p["name"]) for path, item in app.openapi()["paths"].items() for op in item.values()
              if isinstance(op, dict) for p in op.get("parameters", [])}
    assert {(path, name) for path, name in params if name in injected} == set()
