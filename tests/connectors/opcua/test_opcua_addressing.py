"""OPC-UA node addresses and device status against a real asyncua server (issue 16, adr/0150): ``nsu=`` ids
resolve through the server's namespace array, again after a restart that renumbers the namespaces; an
unknown URI is refused, never read from namespace 0; browse paths address nodes; refused nodes are logged,
listed in a CONFIG_ISSUE event and not counted; a healthy subscription with unchanged values keeps reporting
the device ONLINE, a lost session reports it OFFLINE."""

from __future__ import annotations

import logging
import time

import pytest
from asyncua import Server, ua

from connectors.opcua.config import OpcUaSiteConfig
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.session import ServerSession, _Handler
from connectors.siteconfig import validate_site
from connectors.uplink import UplinkPublisher
from schemas import topics
from tests.conftest import PORT_OFFSET
from tests.connectors.support import LoopThread, new_tenant_id, records
from tests.utils.factories import wait_for

PORT = 24841 + PORT_OFFSET
ENDPOINT = f"opc.tcp://127.0.0.1:{PORT}/fs"
PLANT = "urn:fleetstream:test:plant"
logging.getLogger("asyncua").setLevel(logging.ERROR)


class Renumbering:
    """A server whose plant namespace gets another index on each start (other namespaces registered first),
    and whose namespace 0 holds a decoy with the same string id."""

    def __init__(self, loop: LoopThread):
        self.loop, self.server, self.nodes = loop, None, {}

    def start(self, extra_namespaces: int, pressure: float) -> int:
        async def go():
            s = Server()
            await s.init()
            s.set_endpoint(ENDPOINT)
            for i in range(extra_namespaces):
                await s.register_namespace(f"urn:fleetstream:test:other{i}")
            idx = await s.register_namespace(PLANT)
            boiler = await s.nodes.objects.add_object(ua.NodeId("Boiler7", idx), ua.QualifiedName("Boiler7", idx))
            self.nodes = {
                "pressure": await boiler.add_variable(ua.NodeId("Boiler7.Pressure", idx),
                                                      ua.QualifiedName("Pressure", idx), pressure),
                "level": await boiler.add_variable(ua.NodeId("Boiler7.Level", idx),
                                                   ua.QualifiedName("Level", idx), 3.5),
                # a node of the same string id in namespace 0: what a dropped URI used to read
                "decoy": await s.nodes.objects.add_variable(ua.NodeId("Boiler7.Pressure", 0), "Decoy", -1.0),
            }
            await s.start()
            self.server = s
            return idx
        return self.loop.run(go())

    def stop(self) -> None:
        self.loop.run(self.server.stop())


@pytest.fixture(scope="module")
def plant(infra, settings):
    loop = LoopThread("opcua-addr")
    peer = Renumbering(loop)
    first_idx = peer.start(extra_namespaces=1, pressure=4.25)
    tenant = new_tenant_id()
    site = validate_site({"site_id": "addr", "tenant_id": tenant, "servers": [{
        "endpoint": ENDPOINT, "publishing_interval_ms": 100, "reconnect_min_s": 0.2, "reconnect_max_s": 1,
        "online_every_s": 1, "devices": [
            {"device_id": "by-uri", "nodes": [
                {"node_id": f"nsu={PLANT};s=Boiler7.Pressure", "metric": "pressure"},
                {"node_id": "nsu=urn:nobody:here;s=Boiler7.Pressure", "metric": "ghost"},
                {"node_id": f"ns={first_idx};s=Boiler7.NoSuchNode", "metric": "missing"}]},
            {"device_id": "by-path", "nodes": [
                {"browse_path": f"/Objects/{first_idx}:Boiler7/{first_idx}:Level", "metric": "level"},
                {"browse_path": ["Objects", f"nsu={PLANT};Boiler7", f"nsu={PLANT};Pressure"], "metric": "pressure"},
                {"browse_path": "/Objects/9:Nowhere", "metric": "lost"}]}]}]}, OpcUaSiteConfig)
    uplink = UplinkPublisher(settings.bootstrap_servers, "opcua")
    conn = OpcUaConnector(uplink, site, None)
    since = int(time.time() * 1000)
    loop.run(conn.start())
    yield {"tenant": tenant, "conn": conn, "peer": peer, "since": since}
    loop.run(conn.stop())
    uplink.close()
    peer.stop()
    loop.close()


def _telemetry(settings, tenant, device, match, timeout=60):
    return records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                   lambda r: r["tenant_id"] == tenant and r["device_id"] == device and match(r), timeout=timeout)


def _events(settings, tenant, device, kind, count=1, since=0, timeout=60):
    return records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                   lambda r: r["tenant_id"] == tenant and r["device_id"] == device and r["event_type"] == kind
                   and r["time"] >= since, count=count, timeout=timeout)


def test_nsu_ids_and_browse_paths_read_the_plant_namespace_not_namespace_0(plant, settings):
    t = plant["tenant"]
    assert _telemetry(settings, t, "by-uri", lambda r: r["values"].get("pressure") == 4.25)
    assert _telemetry(settings, t, "by-path", lambda r: r["values"].get("level") == 3.5)
    assert _telemetry(settings, t, "by-path", lambda r: r["values"].get("pressure") == 4.25)
    assert not _telemetry(settings, t, "by-uri", lambda r: "ghost" in r["values"] or r["values"].get("pressure") == -1.0,
                          timeout=2), "an unknown namespace URI was read from another namespace"


def test_refused_nodes_are_listed_in_a_config_issue_and_not_counted(plant, settings):
    t, session = plant["tenant"], plant["conn"].sessions[0]
    wait_for(lambda: session.connected, timeout=60, what="session up")
    assert session.subscribed == {"by-uri": 1, "by-path": 2}
    ev = _events(settings, t, "by-uri", "CONFIG_ISSUE")[0]
    assert "2 node(s) not subscribed" in ev["reason"] and "urn:nobody:here" in ev["details"]["ghost"]
    assert "BadNodeIdUnknown" in ev["details"]["missing"]
    path_ev = _events(settings, t, "by-path", "CONFIG_ISSUE")[0]
    assert set(path_ev["details"]) == {"lost"} and "/Objects/9:Nowhere" in path_ev["details"]["lost"]


def test_refused_nodes_are_logged_at_warning(plant, caplog):
    session = plant["conn"].sessions[0]
    with caplog.at_level(logging.WARNING, logger="connectors.opcua.session"):
        session._refuse("by-uri", "ghost", "nsu=urn:nobody:here;s=X", "the server has no namespace")
    assert any(r.levelno == logging.WARNING and "ghost" in r.getMessage() for r in caplog.records)


def test_a_healthy_subscription_with_unchanged_values_keeps_reporting_online(plant, settings):
    t = plant["tenant"]
    wait_for(lambda: plant["conn"].sessions[0].connected, timeout=60, what="session up")
    since = int(time.time() * 1000)
    online = _events(settings, t, "by-uri", "ONLINE", count=3, since=since)
    assert len(online) >= 3 and all(e["source"] == "opcua" for e in online)
    assert online[-1]["details"]["nodes"] == "1"
    # the same session all along: keep-alives kept the subscription healthy, no reconnect in between
    assert not records(settings.bootstrap_servers, topics.DEVICE_EVENTS.name,
                       lambda r: r["tenant_id"] == t and r["event_type"] == "OFFLINE" and since <= r["time"]
                       <= online[-1]["time"], timeout=3)


def test_restart_that_renumbers_namespaces_is_offline_then_resolved_again(plant, settings):
    t, peer = plant["tenant"], plant["peer"]
    wait_for(lambda: plant["conn"].sessions[0].connected, timeout=60, what="session up")
    since = int(time.time() * 1000)
    peer.stop()
    off = _events(settings, t, "by-uri", "OFFLINE", since=since)
    assert off and "session lost" in off[0]["reason"]
    new_idx = peer.start(extra_namespaces=3, pressure=5.5)  # the plant's index moves
    assert _telemetry(settings, t, "by-uri", lambda r: r["values"].get("pressure") == 5.5)
    assert plant["conn"].sessions[0].namespaces.index(PLANT) == new_idx
    assert _telemetry(settings, t, "by-path", lambda r: r["values"].get("pressure") == 5.5)
    assert _events(settings, t, "by-uri", "ONLINE", since=since)


def test_a_bad_subscription_status_marks_the_session_lost_without_an_attribute_error():
    session = ServerSession.__new__(ServerSession)
    session.lost = _Event()
    session.server = type("S", (), {"endpoint": ENDPOINT})()
    _Handler(session).status_change_notification(ua.StatusChangeNotification(Status=ua.StatusCode(
        ua.StatusCodes.BadTimeout)))
    assert session.lost.is_set()
    session.lost = _Event()
    _Handler(session).status_change_notification(ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.Good)))
    assert not session.lost.is_set()


class _Event:
    def __init__(self):
        self._set = False

    def set(self):
        self._set = True

    def is_set(self):
        return self._set


def test_an_address_needs_exactly_one_form():
    from connectors.errors import ConfigError
    with pytest.raises(ConfigError, match="node_id/browse_path: give exactly one"):
        validate_site({"site_id": "s", "tenant_id": "t", "servers": [{"endpoint": ENDPOINT, "devices": [
            {"device_id": "d", "nodes": [{"metric": "m"}]}]}]}, OpcUaSiteConfig)
    with pytest.raises(ConfigError, match="node_id"):
        validate_site({"site_id": "s", "tenant_id": "t", "servers": [{"endpoint": ENDPOINT, "devices": [
            {"device_id": "d", "nodes": [{"metric": "m", "node_id": "Boiler.Temp"}]}]}]}, OpcUaSiteConfig)
