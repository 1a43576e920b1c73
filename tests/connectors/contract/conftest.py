"""One harness per protocol of ``peers.PEERS``: the peer, the site's registry entries, the connector with its
admission and command router, all real; module scope, so each protocol's peer starts once. ``push`` does the
same for the protocols whose devices send (``push_peers.PUSH_PEERS``: MQTT, CoAP, HTTP)."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from connectors.base import Admission
from connectors.commands import CommandRouter
from connectors.ratelimit import TokenBuckets
from connectors.registry import DeviceRegistry
from connectors.siteconfig import validate_site
from connectors.uplink import UplinkPublisher
from schemas import codec, device_key, topics
from tests.connectors.support import LoopThread, new_tenant_id, records, register_device
from tests.utils.factories import wait_for

from .peers import PEERS, Peer
from .push_peers import PUSH_PEERS


class _TenantRecords:
    """What the tests ask Kafka about the harness's tenant (``bootstrap``, ``tenant``, ``protocol`` set by it)."""

    bootstrap: str
    tenant: str
    protocol: str

    def telemetry(self, match, device="dev-1", timeout=60, **kw):
        return records(self.bootstrap, topics.TELEMETRY_RAW.name,
                       lambda r: r["tenant_id"] == self.tenant and r["device_id"] == device and match(r),
                       timeout=timeout, **kw)

    def dead_letters(self, match, timeout=60):
        return records(self.bootstrap, topics.DEAD_LETTER.name,
                       lambda r: r["tenant_id"] == self.tenant and match(r), timeout=timeout)

    def event(self, kind, since=0, device="dev-1", timeout=60):
        found = records(self.bootstrap, topics.DEVICE_EVENTS.name,
                        lambda r: r["tenant_id"] == self.tenant and r["device_id"] == device
                        and r["event_type"] == kind and r["time"] >= since, timeout=timeout)
        assert found, f"{self.protocol}: no {kind} event for {device}"
        return found[0]


class Harness(_TenantRecords):
    def __init__(self, peer: Peer, settings):
        self.peer, self.settings, self.bootstrap = peer, settings, settings.bootstrap_servers
        self.protocol = peer.protocol
        self.tenant = new_tenant_id()
        model, raw = peer.site(self.tenant)
        self.site = validate_site(raw, model)
        register_device(self.bootstrap, self.tenant, "dev-1")
        register_device(self.bootstrap, self.tenant, "held", status="suspended")
        self.registry = DeviceRegistry(self.bootstrap, f"test-contract-{self.protocol}").start()
        # both: the entries are keyed to different partitions, which the registry may read at different paces
        wait_for(lambda: self.registry.get(self.tenant, "dev-1") and self.registry.get(self.tenant, "held"),
                 timeout=60, what="registry entries")
        self.uplink = UplinkPublisher(self.bootstrap, self.protocol)
        self.conn = self.router = None

    def start_connector(self) -> None:
        self.conn = self.peer.connector(self.uplink, self.site, Admission(self.registry, TokenBuckets(1000, 1000)))
        self.peer.loop.run(self.conn.start())
        self.router = CommandRouter(self.bootstrap, self.conn, self.peer.loop.loop,
                                    f"test-contract-{self.protocol}-{self.tenant}").start()

    def stop_connector(self) -> None:
        self.router.stop()
        self.peer.loop.run(self.conn.stop())

    def close(self) -> None:
        self.stop_connector()
        self.registry.stop()
        self.uplink.close()

    # -- commands and their acks --------------------------------------------------------------------------
    def command(self, name: str, params_json: str, *, attempt: int = 1, max_attempts: int = 4,
                command_id: str | None = None, device: str = "dev-1") -> str:
        command_id = command_id or uuid.uuid4().hex
        rec = {"tenant_id": self.tenant, "device_id": device, "command_id": command_id, "name": name,
               "params_json": params_json, "created_at": int(time.time() * 1000), "timeout_ms": 20_000,
               "expires_at": None, "attempt": attempt, "idempotency_key": None, "protocol": self.protocol,
               "max_attempts": max_attempts}
        p = Producer({"bootstrap.servers": self.bootstrap})
        p.produce(topics.COMMANDS.name, codec("command").encode(rec), device_key(self.tenant, device))
        assert p.flush(30) == 0
        return command_id

    def ack(self, command_id: str, timeout: float = 60) -> dict:
        found = records(self.bootstrap, topics.COMMAND_ACKS.name, lambda r: r["command_id"] == command_id,
                        timeout=timeout)
        assert found, f"{self.protocol}: no ack for {command_id}"
        return found[0]


@pytest.fixture(scope="module", params=sorted(PEERS))
def harness(request, infra, settings):
    loop = LoopThread(f"contract-{request.param}")
    peer = PEERS[request.param](loop)
    peer.start()
    h = Harness(peer, settings)
    h.start_connector()
    yield h
    h.close()
    peer.stop()
    loop.close()


class PushHarness(_TenantRecords):
    """A push protocol's peer (``push_peers``) and what the tests ask of Kafka about its tenant."""

    def __init__(self, peer, settings):
        self.peer, self.bootstrap, self.protocol = peer, settings.bootstrap_servers, peer.protocol
        self.tenant = peer.start()

    def command(self, name: str, params_json: str, device: str = "dev-1") -> str:
        command_id = uuid.uuid4().hex
        rec = {"tenant_id": self.tenant, "device_id": device, "command_id": command_id, "name": name,
               "params_json": params_json, "created_at": int(time.time() * 1000), "timeout_ms": 30_000,
               "expires_at": None, "attempt": 1, "idempotency_key": None, "protocol": self.protocol,
               "max_attempts": 4}
        p = Producer({"bootstrap.servers": self.bootstrap})
        p.produce(topics.COMMANDS.name, codec("command").encode(rec), device_key(self.tenant, device))
        assert p.flush(30) == 0
        return command_id

    def acks(self, command_id: str, status: str, timeout: float = 60) -> list[dict]:
        return records(self.bootstrap, topics.COMMAND_ACKS.name,
                       lambda r: r["command_id"] == command_id and r["status"] == status, timeout=timeout)


@pytest.fixture(scope="module", params=sorted(PUSH_PEERS))
def push(request, infra, settings, factory, tmp_path_factory):
    if request.param == "mqtt":
        request.getfixturevalue("stack")  # device certificates and the broker's access plugin of the stack
    peer = PUSH_PEERS[request.param](settings, factory, tmp_path_factory.mktemp(f"contract-{request.param}"))
    h = PushHarness(peer, settings)
    yield h
    peer.close()
