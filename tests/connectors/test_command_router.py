"""The command contract every protocol delivers through (adr/0122): ``CommandRouter`` hands a connector the
fresh attempts of its protocol (unset: MQTT) to devices it serves, judged by when the command agent emitted
them, so a retry is delivered and a stale or expired attempt is skipped without an answer; it writes the
ack the connector's result names (none for ``not_delivered``) and holds commands while the connector's link
to its devices is down."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from connectors.base import CommandResult, ConnectorHealth, ListeningConnector
from connectors.commands import CommandRouter
from connectors.uplink import UplinkPublisher
from schemas import codec, device_key, topics
from tests.connectors.support import LoopThread, new_tenant_id, records
from tests.utils.factories import wait_for


class Recorder(ListeningConnector):
    """An asynchronous protocol that records what it is asked to deliver."""

    type_name = "mqtt"

    def __init__(self, uplink: UplinkPublisher, tenant_id: str):
        super().__init__(uplink)
        self.tenant_id, self.got = tenant_id, []
        self.link_up = threading.Event()
        self.link_up.set()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> ConnectorHealth:
        return ConnectorHealth(True)

    def serves(self, tenant_id: str, device_id: str) -> bool:
        return tenant_id == self.tenant_id

    def ready_to_deliver(self) -> bool:
        return self.link_up.is_set()

    async def deliver_command(self, command: dict) -> CommandResult:
        self.got.append(command["name"])
        return CommandResult.not_delivered("the transport refused it") if command["name"] == "refused" \
            else CommandResult.sent()


def _now() -> int:
    return int(time.time() * 1000)


def _publish(bootstrap: str, tenant_id: str, cmds: list[dict]) -> None:
    """Attempts as the command agent emits them; ``emitted`` sets the record's timestamp."""
    p, c = Producer({"bootstrap.servers": bootstrap}), codec("command")
    for cmd in cmds:
        emitted = cmd.pop("emitted", _now())
        rec = {"tenant_id": tenant_id, "device_id": "dev-1", "command_id": uuid.uuid4().hex, "params_json": "{}",
               "created_at": emitted, "timeout_ms": 30_000, "expires_at": None, "attempt": 1,
               "idempotency_key": None, "protocol": None, "max_attempts": 4, **cmd}
        p.produce(topics.COMMANDS.name, c.encode(rec), device_key(tenant_id, "dev-1"), timestamp=emitted)
    assert p.flush(30) == 0


@pytest.fixture
def router(infra, settings):
    loop, tenant = LoopThread("router"), new_tenant_id()
    instance = f"router-test-{tenant[:8]}"
    conn = Recorder(UplinkPublisher(settings.bootstrap_servers, "mqtt", instance=instance), tenant)
    conn.instance = instance
    r = CommandRouter(settings.bootstrap_servers, conn, loop.loop, f"test-router-{tenant}").start()
    yield r
    r.stop()
    conn.uplink.close()
    loop.close()


def _acks(settings, router: CommandRouter, last: str) -> list[dict]:
    """Acks this router wrote (the stack's MQTT connector, when it runs, answers these commands too)."""
    mine = router.connector.instance.encode()
    found = records(settings.bootstrap_servers, topics.COMMAND_ACKS.name,
                    lambda a: a["tenant_id"] == router.connector.tenant_id, headers=True,
                    until=lambda found: any(a["command_id"] == last and h.get("fs-instance") == mine
                                            for a, h in found))
    return [a for a, h in found if h.get("fs-instance") == mine]


def test_fresh_attempts_of_the_protocol_are_delivered_stale_and_expired_ones_skipped_unanswered(router, settings):
    conn, now = router.connector, _now()
    _publish(settings.bootstrap_servers, conn.tenant_id, [
        {"name": "stale", "emitted": now - 60_000},                              # the agent moved on
        {"name": "retry", "created_at": now - 600_000, "attempt": 2},           # an old command, a fresh attempt
        {"name": "expired", "expires_at": now - 1},
        {"name": "other-protocol", "protocol": "modbus"},
        {"name": "named-mqtt", "protocol": "mqtt"},
        {"name": "refused"},
        {"name": "last"},
    ])
    wait_for(lambda: "last" in conn.got, what="the last command delivered")
    assert conn.got == ["retry", "named-mqtt", "refused", "last"]  # one partition: in order
    assert router.skipped == 2
    sent = records(settings.bootstrap_servers, topics.COMMANDS.name, lambda c: c["tenant_id"] == conn.tenant_id,
                   count=7)
    names = {c["command_id"]: c["name"] for c in sent}
    last = next(cid for cid, n in names.items() if n == "last")
    answered = {names[a["command_id"]]: a["status"] for a in _acks(settings, router, last)}
    assert answered == {"retry": "SENT", "named-mqtt": "SENT", "last": "SENT"}


def test_commands_wait_while_the_link_is_down_and_those_gone_stale_meanwhile_are_dropped(router, settings):
    conn = router.connector
    conn.link_up.clear()
    _publish(settings.bootstrap_servers, conn.tenant_id, [{"name": "short", "timeout_ms": 1000},
                                                          {"name": "patient", "timeout_ms": 120_000}])
    wait_for(lambda: router.skipped == 1, what="the short-lived command dropped while the link is down")
    assert conn.got == []
    conn.link_up.set()
    wait_for(lambda: conn.got == ["patient"], what="the patient command delivered once the link is back")
