"""`fleetstream up --sites DIR` (issue 16, adr/0153): every site file of the directory is validated before
anything starts (one report naming each bad file), and each becomes a supervised connector process that
reads its real peer into Kafka."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import ModbusTcpServer

from connectors.errors import ConfigError
from connectors.siteconfig import load_site_dir
from fleetstream.cli import main
from schemas import topics
from tests.conftest import PORT_OFFSET
from tests.connectors.support import LoopThread, new_tenant_id, records, register_device
from tests.utils.factories import wait_for

PORT = 25508 + PORT_OFFSET
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _modbus(tenant: str, site_id: str = "plant-9") -> str:
    return textwrap.dedent(f"""\
        site_id: {site_id}
        tenant_id: {tenant}
        gateways:
          - host: 127.0.0.1
            port: {PORT}
            timeout_s: 1
            devices:
              - device_id: tank-1
                unit_id: 1
                interval_s: 0.5
                points:
                  - {{metric: level, address: 0, type: uint16}}
        """)


OPCUA = textwrap.dedent("""\
    site_id: line-9
    tenant_id: t
    servers:
      - endpoint: opc.tcp://127.0.0.1:4840
        devices:
          - device_id: press-1
            nodes:
              - {node_id: "nsu=urn:acme;s=Press.Temp", metric: temp}
    """)


def test_a_directory_of_site_files_is_read_by_protocol(tmp_path: Path):
    (tmp_path / "plant.yaml").write_text(_modbus("t"))
    (tmp_path / "line.yml").write_text(OPCUA)
    (tmp_path / "notes.txt").write_text("not a site")
    got = {(f.protocol, f.site.site_id) for f in load_site_dir(tmp_path)}
    assert got == {("modbus", "plant-9"), ("opcua", "line-9")}


def test_every_bad_file_is_named_and_nothing_starts(tmp_path: Path, capsys):
    (tmp_path / "a.yaml").write_text(_modbus("t"))
    (tmp_path / "b.yaml").write_text(_modbus("t"))  # the same site_id again
    (tmp_path / "c.yaml").write_text("site_id: x\ntenant_id: t\n")  # neither gateways nor servers
    (tmp_path / "d.yaml").write_text(OPCUA.replace("metric: temp", "metric: temp, colour: red"))
    with pytest.raises(ConfigError) as info:
        load_site_dir(tmp_path)
    msg = str(info.value)
    assert "b.yaml: site_id 'plant-9' is also used by" in msg
    assert "c.yaml: a site file lists either gateways (Modbus) or servers (OPC-UA)" in msg
    assert "d.yaml:\nsite/line-9/opc.tcp://127.0.0.1:4840/press-1/temp: colour Extra inputs" in msg
    assert main(["--data-dir", str(tmp_path / "data"), "up", "--sites", str(tmp_path)]) == 2
    assert "invalid site files" in capsys.readouterr().err
    assert not (tmp_path / "data" / "stack.json").exists()


def test_each_site_file_runs_as_a_supervised_connector(infra, settings, tmp_path: Path):
    loop = LoopThread("sites-plc")

    async def serve():
        blk = ModbusSparseDataBlock({0: [321]})  # protocol address 0 holds 321
        server = ModbusTcpServer(ModbusServerContext(devices={1: ModbusDeviceContext(hr=blk)}, single=False),
                                 address=("127.0.0.1", PORT))
        await server.serve_forever(background=True)
        return server
    server = loop.run(serve())
    tenant = new_tenant_id()
    register_device(settings.bootstrap_servers, tenant, "tank-1")
    (tmp_path / "plant.yaml").write_text(_modbus(tenant, site_id=f"p-{tenant[:8]}"))
    (f,) = load_site_dir(tmp_path)
    infra.start_sites([(f.protocol, f.site.site_id, f.path)])
    child = next(c for c in infra.children if c.name == f"site-modbus-{f.site.site_id}")
    try:
        rec = records(settings.bootstrap_servers, topics.TELEMETRY_RAW.name,
                      lambda r: r["tenant_id"] == tenant and r["device_id"] == "tank-1", timeout=90)
        assert rec and rec[0]["values"] == {"level": 321.0}, child.log.read_text()[-2000:]
        assert child.alive()
    finally:
        infra.children.remove(child)
        child.stop()
        wait_for(lambda: not child.alive(), timeout=30, what="site connector stopped")
        loop.run(server.shutdown())
        loop.close()
