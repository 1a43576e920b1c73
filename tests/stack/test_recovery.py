"""The stack recovers by itself (issue 19, adr/0111): in a stack of its own, watched by the supervisor as
`fleetstream up` does, Kafka, Mosquitto, Postgres and the Schema Registry are killed with SIGKILL, all at
once (adr/0202). Without anyone stepping in, each is restarted, the gateway's `/readyz` returns to 200, a
reading a device publishes afterwards is stored and queryable, and the registry hands out the ids the
running processes write with."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from fleetstream.stack.supervisor import Stack
from runtime.schema_registry import SchemaRegistry, register_all
from runtime.settings import Settings
from schemas.codec import bound_ids
from tests.conftest import PORT_OFFSET
from tests.utils.factories import Factory, publish_json, wait_for
from tests.utils.stacks import watched_stack as watched

# Below the kernel's ephemeral range (32768+) even with an offset, so a client's outgoing port never takes one
# (seen: "address already in use" for a gateway port up there); clear of the other suites' ports
PORTS = {k: v + PORT_OFFSET for k, v in dict(
    kafka_port=12592, kafka_controller_port=12593, mqtt_tls_port=12583, postgres_port=12532,
    gateway_port=12580, schema_registry_port=12581, streams_web_port=12590, coap_port=12584).items()}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def watched_stack(tmp_path_factory):
    # two partitions per topic, not six: a restarted Kafka loads, fences and re-elects every partition it holds,
    # 133 of them at six (~30 s at load 30); what recovers is the same with two (adr/0202)
    s = Settings(data_dir=tmp_path_factory.mktemp("recovery") / "data", **PORTS, sink_batch_ms=100,
                 kafka_partitions=2)
    with watched(s) as stack:
        yield stack


def _restarted(stack: Stack, victim: str, since: float) -> bool:
    return any(e["component"] == victim and e["event"] == "restarted" and e["at"] >= since for e in stack.events)


def _checks(gw: httpx.Client) -> dict:
    try:
        return gw.get("/readyz", timeout=10).json().get("checks", {})
    except (httpx.HTTPError, ValueError):
        return {}


def _readyz(gw: httpx.Client) -> int:
    try:
        return gw.get("/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _publish_and_find(factory: Factory, gw: httpx.Client, tenant, device, after_ms: int) -> list:
    """A fresh device session publishes one reading stamped ``after_ms`` (the broker may just be back:
    connect until it takes us) and waits until the gateway serves it."""
    def connect():
        try:
            return factory.mqtt_client(device)
        except (AssertionError, OSError):
            return None

    client = wait_for(connect, timeout=120, interval=1, what="the device to connect to the broker")
    try:
        info = publish_json(client, f"fs/{tenant.tenant_id}/{device.device_id}/telemetry",
                            {"ts": after_ms, "values": {"temperature": 21.5}})
        assert info.rc == 0
    finally:
        client.loop_stop()
        client.disconnect()

    def stored():
        try:
            token = tenant.token(gw)
            r = gw.get(f"/v1/devices/{device.device_id}/telemetry", headers={"Authorization": f"Bearer {token}"},
                       params={"metric": "temperature", "from": time.strftime(
                           "%Y-%m-%dT%H:%M:%S", time.gmtime(after_ms / 1000)) + f".{after_ms % 1000:03d}Z"})
        except httpx.HTTPError:
            return None
        return r.status_code == 200 and r.json()["points"]

    return wait_for(stored, timeout=240, interval=1, what=f"the reading stamped {after_ms} to be stored")


# what the test kills; each one's restart runs beside the others' (the supervisor restarts every dead child
# on its own), so the test waits for the slowest restart, not for the sum of four (adr/0202)
VICTIMS = ("kafka", "mosquitto", "postgres", "schema-registry")


@pytest.mark.timeout(1800)
def test_kafka_mosquitto_postgres_and_the_registry_killed_hard_at_once_come_back_without_a_human(watched_stack):
    """Every one of them must come back while the others are still down or starting: the connector finds
    Mosquitto and Kafka again, the gateway's pool Postgres, the sink and the streams worker Kafka. The
    registry's H2 file outlives its kill: a process starting afterwards gets the ids the running ones write
    with (adr/0140)."""
    stack, s = watched_stack, watched_stack.s
    factory = Factory(s)
    try:
        tenant = factory.tenant("recovery")
        device = factory.device(tenant)
    finally:
        factory.close()
    factory = Factory(s)  # its own pool, opened now, is broken by the Postgres kill; it is used before that
    bound = bound_ids()
    with httpx.Client(base_url=f"http://{s.host}:{s.gateway_port}", timeout=10) as gw:
        assert _publish_and_find(factory, gw, tenant, device, int(time.time() * 1000))
        killed_at = time.time()
        for victim in VICTIMS:
            os.kill(next(c for c in stack.children if c.name == victim).pid, signal.SIGKILL)
        # Kafka's restart takes many seconds: /readyz must say so meanwhile
        down = wait_for(lambda: _checks(gw).get("kafka", "ok") != "ok" and _checks(gw), timeout=60,
                        interval=0.3, what="/readyz to report Kafka down")
        assert down["kafka"].startswith("error"), down
        wait_for(lambda: all(_restarted(stack, v, killed_at) for v in VICTIMS), timeout=120,
                 what=f"the supervisor to restart {', '.join(VICTIMS)}")
        wait_for(lambda: _readyz(gw) == 200, timeout=300, interval=0.5, what="/readyz 200 after the kills")
        points = _publish_and_find(factory, gw, tenant, device, int(time.time() * 1000))
        assert points[0]["value"] == 21.5, points
    factory.close()
    reg = SchemaRegistry.from_settings(s)
    reg.wait_ready(180)
    assert register_all(reg) == bound
    restarted = {e["component"] for e in stack.events if e["event"] == "restarted"}
    assert restarted >= set(VICTIMS), restarted
