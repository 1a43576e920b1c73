"""Postgres and Kafka never disagree about the control plane (issue 19, adr/0108).

- The reporter's half-done write: ``POST /v1/devices`` with a 10 MB body created the device and then failed
  to publish it (plain-text 500). Now a change whose record Kafka could not take is refused with a JSON 413
  and leaves nothing behind, in Postgres or on the topic.
- A relay that dies between commit and publish (modelled by holding the relay's lock, so no relay runs, as
  after a crash) leaves the rows pending; when the lock is free again a relay publishes them and the
  registry topic converges to Postgres. The changes are made through a second gateway whose answers wait
  0.5 s for Kafka (``FLEETSTREAM_OUTBOX_WAIT_S``), not the default 5 s: what is asserted is that they answer
  at all and leave the rows pending, not how long they waited (adr/0198).
- Kafka unavailable: the relay's delivery fails, the rows stay pending with the error, and are published
  once a relay can reach Kafka.
- Two gateway replicas changing one device: its entries appear on the topic in version order, the last one
  equal to Postgres.
"""

from __future__ import annotations

import psycopg
import pytest

from gateway.errors import ApiError
from gateway.outbox.relay import LOCK_KEY, OutboxRelay
from schemas import device_key, topics
from tests.gateway.helpers import bearer
from tests.gateway.replica import second_gateway
from tests.utils.factories import wait_for
from tests.utils.kafka import records_to_end


def registry_entries(bootstrap: str, tenant_id: str, device_id: str) -> list[dict | None]:
    """Every record of one device on the registry topic so far, in order (None for a tombstone)."""
    return records_to_end(bootstrap, topics.REGISTRY.name, device_key(tenant_id, device_id))


# how long the replica's answers wait for Kafka: short, as the blocked changes below wait it out in vain
REPLICA_OUTBOX_WAIT_S = 0.5


@pytest.fixture(scope="module")
def replica(stack, settings):
    """A second gateway replica, its answers waiting ``REPLICA_OUTBOX_WAIT_S`` for Kafka."""
    with second_gateway(settings, port_shift=8, env={"FLEETSTREAM_OUTBOX_WAIT_S": str(REPLICA_OUTBOX_WAIT_S)}) as c:
        yield c


@pytest.fixture
def relay_lock(settings):
    """The relay's advisory lock, taken by ``hold()``: no relay in any process publishes while it is held, as
    after a crash between commit and publish. ``release()`` is the crashed relay's session ending. Taken only
    once the test's tenant exists: creating it waits for Kafka (5 s in vain under the lock)."""

    class Lock:
        conn: psycopg.Connection | None = None

        def hold(self) -> Lock:
            self.conn = psycopg.connect(settings.app_dsn, autocommit=True)
            wait_for(lambda: self.conn.execute("select pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0], 30,
                     what="the relay lock (a relay is between batches within a second)")
            return self

        def release(self):
            if self.conn is not None and not self.conn.closed:
                self.conn.close()

    lock = Lock()
    yield lock
    lock.release()


def _pending(settings, ids: list[int]) -> set[int]:
    with psycopg.connect(settings.app_dsn) as conn:
        return {r[0] for r in conn.execute("select * from outbox_unpublished(%s)", (ids,))}


def _outbox_ids(settings, tenant_id: str) -> list[int]:
    with psycopg.connect(settings.owner_dsn) as conn:
        return [r[0] for r in conn.execute("select id from outbox where tenant_id = %s order by id", (tenant_id,))]


def test_a_change_kafka_cannot_take_is_refused_whole_and_leaves_nothing(stack, factory, gateway, settings):
    t = factory.tenant("big")
    h = bearer(t.token(gateway))
    r = gateway.post("/v1/devices", json={"device_id": "big-1", "attributes": {"blob": "x" * 10_000_000}}, headers=h)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/json"), r.text[:200]
    assert gateway.get("/v1/devices/big-1", headers=h).status_code == 404
    # below any body limit of the API but above what one Kafka record may be: refused by the outbox itself
    with pytest.raises(ApiError) as e:
        factory.admin.create_device(t.tenant_id, "big-2", attributes={"blob": "x" * 1_200_000})
    assert (e.value.status, e.value.code) == (413, "record_too_large")
    assert gateway.get("/v1/devices/big-2", headers=h).status_code == 404
    r = gateway.patch(f"/v1/devices/{factory.device(t, 'small-1').device_id}",
                      json={"attributes": {"blob": "x" * 1_200_000}}, headers=h)
    assert r.status_code == 413, r.text[:200]
    assert gateway.get("/v1/devices/small-1", headers=h).json()["attributes"] == {}
    for device_id in ("big-1", "big-2"):
        assert registry_entries(settings.bootstrap_servers, t.tenant_id, device_id) == []


def test_a_relay_dying_between_commit_and_publish_is_finished_by_the_next(stack, factory, gateway, settings,
                                                                          replica, relay_lock):
    t = factory.tenant("crash")
    h = bearer(t.token(gateway))
    before = set(_outbox_ids(settings, t.tenant_id))  # the tenant's entry
    relay_lock.hold()
    r = replica.post("/v1/devices", json={"device_id": "c-1", "tags": ["x"]}, headers=h)
    assert r.status_code == 201, r.text  # committed: the answer waited for Kafka, in vain, then answered
    r = replica.patch("/v1/devices/c-1", json={"tags": ["y"]}, headers=h)
    assert r.status_code == 200
    ids = [i for i in _outbox_ids(settings, t.tenant_id) if i not in before]  # the device's entry, its change
    assert len(ids) == 2 and _pending(settings, ids) == set(ids)
    assert registry_entries(settings.bootstrap_servers, t.tenant_id, "c-1") == []

    relay_lock.release()  # the dead relay's session ends: a live one takes over
    wait_for(lambda: not _pending(settings, ids), 30, what="the pending rows published")
    entries = registry_entries(settings.bootstrap_servers, t.tenant_id, "c-1")
    assert [e["tags"] for e in entries] == [["x"], ["y"]]
    pg = gateway.get("/v1/devices/c-1", headers=h).json()
    assert entries[-1]["version"] == pg["version"] and entries[-1]["tags"] == pg["tags"]


def test_kafka_unavailable_keeps_the_rows_pending_until_a_relay_reaches_it(stack, factory, gateway, settings,
                                                                           replica, relay_lock):
    t = factory.tenant("nokafka")
    h = bearer(t.token(gateway))
    before = set(_outbox_ids(settings, t.tenant_id))  # the tenant's entry
    relay_lock.hold()
    assert replica.post("/v1/devices", json={"device_id": "k-1"}, headers=h).status_code == 201
    ids = [i for i in _outbox_ids(settings, t.tenant_id) if i not in before]  # the device's entry
    assert len(ids) == 1
    # a relay whose Kafka does not answer, working the pending rows under the held lock
    dead_kafka = OutboxRelay(settings.app_dsn, "127.0.0.1:1", producer_config={"message.timeout.ms": 1500})
    try:
        assert dead_kafka.drain(relay_lock.conn) >= 1
    finally:
        dead_kafka.stop()
    with psycopg.connect(settings.owner_dsn) as conn:
        attempts, error = conn.execute("select attempts, last_error from outbox where id = %s", (ids[-1],)).fetchone()
    assert attempts >= 1 and error and _pending(settings, ids) == set(ids)
    assert registry_entries(settings.bootstrap_servers, t.tenant_id, "k-1") == []

    relay_lock.release()
    wait_for(lambda: not _pending(settings, ids), 30, what="the rows published once Kafka is reachable")
    assert [e["status"] for e in registry_entries(settings.bootstrap_servers, t.tenant_id, "k-1")] == ["provisioned"]


def test_two_replicas_changing_one_device_publish_its_entries_in_order(stack, factory, gateway, settings, replica):
    t = factory.tenant("order")
    h = bearer(t.token(gateway))
    assert gateway.post("/v1/devices", json={"device_id": "o-1"}, headers=h).status_code == 201
    for i in range(20):
        client = gateway if i % 2 else replica
        r = client.patch("/v1/devices/o-1", json={"attributes": {"n": i}}, headers=h)
        assert r.status_code == 200, r.text
    pg = gateway.get("/v1/devices/o-1", headers=h).json()
    ids = _outbox_ids(settings, t.tenant_id)
    wait_for(lambda: not _pending(settings, ids), 30, what="every change published")
    versions = [e["version"] for e in registry_entries(settings.bootstrap_servers, t.tenant_id, "o-1")]
    assert versions == sorted(versions) and versions[-1] == pg["version"] == 20
    assert set(range(21)) <= set(versions)
