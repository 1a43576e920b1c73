"""The EMQX adapter (adr/0139). No EMQX runs here: the authorization hook is called with request bodies as
EMQX's HTTP authorization source renders them (docs.emqx.com, "Use HTTP Service": JSON body from a template,
answer HTTP 200 {"result": allow|deny|ignore}), on a gateway replica configured for EMQX; the control plane's
bans and kicks go to a recording HTTP server that answers like EMQX's REST API (/api/v5/banned,
/api/v5/clients). What real EMQX does with the answers stays unverified here."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.gateway.helpers import bearer
from tests.gateway.replica import second_gateway
from tests.utils.factories import wait_for

SECRET = "hook-secret-for-tests"


class FakeEmqxApi:
    """Records the REST calls; lists the clients it was told are connected."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict | None]] = []
        self.connected: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code: int, body: dict | None = None) -> None:
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _record(self) -> dict | None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                assert self.headers["Authorization"].startswith("Basic ")
                api.calls.append((self.command, self.path, body))
                return body

            def do_POST(self):  # noqa: N802
                body = self._record()
                self._answer(200, body)

            def do_DELETE(self):  # noqa: N802
                self._record()
                cid = self.path.rsplit("/", 1)[-1]
                self._answer(204 if not self.path.startswith("/api/v5/clients/") or cid in api.connected else 404)

            def do_GET(self):  # noqa: N802
                self._record()
                self._answer(200, {"data": [{"clientid": c, "username": c} for c in api.connected],
                                   "meta": {"hasnext": False}})

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v5"

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def emqx_api():
    api = FakeEmqxApi()
    yield api
    api.close()


@pytest.fixture(scope="module")
def emqx_gateway(stack, settings, emqx_api):
    env = {"FLEETSTREAM_MQTT_BROKER": "emqx", "FLEETSTREAM_EMQX_API_URL": emqx_api.url,
           "FLEETSTREAM_EMQX_API_KEY": "k", "FLEETSTREAM_EMQX_API_SECRET": "s",
           "FLEETSTREAM_BROKER_HOOK_SECRET": SECRET}
    with second_gateway(settings, port_shift=11, env=env) as c:
        yield c


def _ask(gw, *, username: str, topic: str, action: str = "publish", clientid: str | None = None,
         secret: str = SECRET) -> tuple[int, str | None]:
    # the body EMQX renders from the template in helm/fleetstream/files/emqx-values.yaml (all strings)
    body = {"clientid": username if clientid is None else clientid, "username": username, "peerhost": "10.0.0.7",
            "proto_name": "MQTT", "mountpoint": "", "action": action, "topic": topic, "qos": "1", "retain": "false"}
    r = gw.post("/internal/broker/emqx/authz", json=body, headers={"Authorization": f"Bearer {secret}"})
    return r.status_code, (r.json().get("result") if r.status_code == 200 else None)


def test_a_device_may_use_its_own_subtree_only(emqx_gateway, factory):
    t = factory.tenant("emqx")
    dev, other = factory.device(t), factory.device(t)
    cn = f"{t.tenant_id}.{dev.device_id}"
    own = f"fs/{t.tenant_id}/{dev.device_id}"
    assert _ask(emqx_gateway, username=cn, topic=f"{own}/telemetry") == (200, "allow")
    assert _ask(emqx_gateway, username=cn, topic=f"{own}/commands/#", action="subscribe") == (200, "allow")
    for topic, action in ((f"fs/{t.tenant_id}/{other.device_id}/telemetry", "publish"), ("#", "subscribe"),
                          (f"fs/{t.tenant_id}/+/telemetry", "subscribe"), ("$SYS/#", "subscribe"),
                          (f"$share/g/{own}/telemetry", "subscribe"), (own, "publish")):
        assert _ask(emqx_gateway, username=cn, topic=topic, action=action) == (200, "deny"), topic
    # a client id other than the certificate's CN: the devices zone was not applied to this listener
    assert _ask(emqx_gateway, username=cn, clientid="fleetstream-connector", topic=f"{own}/telemetry") == (200, "deny")
    # a device that is not registered, a tenant that does not exist
    assert _ask(emqx_gateway, username=f"{t.tenant_id}.ghost", topic=f"fs/{t.tenant_id}/ghost/telemetry") == (200, "deny")
    # platform identities are left to the next source (the ACL file)
    assert _ask(emqx_gateway, username="fleetstream-connector", topic="$share/c/fs/#", action="subscribe") == (200, "ignore")


def test_the_hook_wants_emqxs_secret_and_exists_only_when_configured(emqx_gateway, gateway, factory):
    t = factory.tenant("emqx-secret")
    dev = factory.device(t)
    cn = f"{t.tenant_id}.{dev.device_id}"
    assert _ask(emqx_gateway, username=cn, topic=f"fs/{t.tenant_id}/{dev.device_id}/x", secret="wrong")[0] == 401
    assert _ask(gateway, username=cn, topic=f"fs/{t.tenant_id}/{dev.device_id}/x")[0] == 404  # Mosquitto mode
    r = emqx_gateway.post("/internal/broker/emqx/authz", content=b"{not json",
                          headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 200 and r.json() == {"result": "deny"}


def test_suspending_bans_and_kicks_through_emqxs_api_and_the_hook_refuses(emqx_gateway, emqx_api, factory):
    t = factory.tenant("emqx-suspend")
    dev = factory.device(t)
    token = t.token(emqx_gateway)
    cn = f"{t.tenant_id}.{dev.device_id}"
    topic = f"fs/{t.tenant_id}/{dev.device_id}/telemetry"
    assert _ask(emqx_gateway, username=cn, topic=topic) == (200, "allow")
    emqx_api.connected.append(cn)
    emqx_api.calls.clear()

    r = emqx_gateway.post(f"/v1/devices/{dev.device_id}/suspend", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert ("POST", "/api/v5/banned", {"as": "username", "who": cn, "reason": "device suspended"}) in emqx_api.calls
    assert ("DELETE", f"/api/v5/clients/{cn}", None) in emqx_api.calls
    wait_for(lambda: _ask(emqx_gateway, username=cn, topic=topic) == (200, "deny"), 60, what="the hook refusing")

    emqx_api.calls.clear()
    assert emqx_gateway.post(f"/v1/devices/{dev.device_id}/resume", headers=bearer(token)).status_code == 200
    assert ("DELETE", f"/api/v5/banned/username/{cn}", None) in emqx_api.calls
    wait_for(lambda: _ask(emqx_gateway, username=cn, topic=topic) == (200, "allow"), 60, what="the hook allowing")
