"""How the supervisor tells replicas apart (adr/0134), without starting anything."""

from __future__ import annotations

import pytest

from fleetstream.stack.supervisor import Stack, parse_replicas, replica_name, replica_port
from runtime.settings import Settings


def test_replicas_are_parsed_with_mqtt_as_the_connector():
    assert parse_replicas("streams=2, mqtt=3,gateway=1") == {"streams": 2, "connector-mqtt": 3, "gateway": 1}
    assert parse_replicas("") == {}
    for bad in ("streams", "kafka=2", "gateway=0", "gateway=10", "gateway=x"):
        with pytest.raises(ValueError):
            parse_replicas(bad)


def test_each_replica_has_its_own_ports_store_sink_groups_and_connector_identity(tmp_path):
    s = Settings(data_dir=tmp_path / "data", gateway_port=18080, streams_web_port=18090, streams_web_token="x")
    stack = Stack(s, {"gateway": 2, "streams": 2, "connector-mqtt": 2})
    assert (replica_name("gateway", 0), replica_name("gateway", 1)) == ("gateway", "gateway.1")
    assert stack.replica_env("gateway", 0) == {}
    g1 = stack.replica_env("gateway", 1)
    assert g1["FLEETSTREAM_GATEWAY_PORT"] == "18180" != str(s.schema_registry_port)
    assert g1["FLEETSTREAM_CLICKHOUSE_DSN"] == f"{s.chdb_dsn}-1"
    assert g1["FLEETSTREAM_SINK_GROUP_PREFIX"] == f"{s.sink_group_prefix}-1"
    assert stack.replica_env("streams", 1) == {"FLEETSTREAM_STREAMS_WEB_PORT": "18190"}
    assert stack.gateway_urls() == [f"http://{s.host}:18080", f"http://{s.host}:18180"]
    assert replica_port(18090, 2) == 18290
    configs = [stack._connector_config(i).read_text() for i in range(2)]
    assert all("share_group: fleetstream" in c for c in configs)
    assert "client_id: fleetstream-connector-shared-0" in configs[0]
    assert "client_id: fleetstream-connector-shared-1" in configs[1]
    child = stack.platform_child("gateway", replica=1)
    assert child.name == "gateway.1" and child.env["FLEETSTREAM_GATEWAY_PORT"] == "18180"
    assert child.log.name == "gateway.1.log"


def test_one_connector_subscribes_plainly_with_its_usual_id(tmp_path):
    stack = Stack(Settings(data_dir=tmp_path / "data", streams_web_token="x"))
    text = stack._connector_config(0).read_text()
    assert "share_group: ''" in text and "client_id" not in text
