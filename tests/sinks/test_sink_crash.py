"""Exactly-once as a tenant sees it: a sink process killed with SIGKILL after writing a batch but before
committing its offsets, then restarted, leaves every point once in the raw table *and* in the minute and
hour rollups (the rollup views see every insert, so a re-written batch would count twice; adr/0060)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from fleetstream.stack.supervisor import settings_env
from schemas import codec, device_key, topics
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.store import TelemetryStore
from tests.utils.factories import wait_for

FIRST, SECOND = 20_000, 5_000


def _produce(settings, tenant, device, start, count, t0):
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20})
    tel = codec("telemetry")
    for i in range(start, start + count):
        p.produce(topics.TELEMETRY.name, key=device_key(tenant, device),
                  value=tel.encode({"tenant_id": tenant, "device_id": device, "event_time": t0 + i * 100,
                                    "receive_time": t0, "protocol": "http", "values": {"v": float(i)}}))
        p.poll(0)
    assert p.flush(30) == 0


def _sink(settings, env, log):
    return subprocess.Popen([sys.executable, "-m", "fleetstream.cli", "run", "sink"], env={**os.environ, **env},
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _caught_up(settings, group) -> bool:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topics.TELEMETRY.name, p)
                 for p in c.list_topics(topics.TELEMETRY.name, timeout=10).topics[topics.TELEMETRY.name].partitions]
        committed = c.committed(parts, timeout=10)
        # a partition nobody ever wrote to has nothing to commit
        return all(tp.offset >= high or high == 0
                   for tp in committed for high in [c.get_watermark_offsets(tp, timeout=10)[1]])
    finally:
        c.close()


def test_sink_killed_between_write_and_commit_leaves_every_point_once(infra, settings, tmp_path):
    tenant, device = str(uuid.uuid4()), "crash-1"
    t0 = (int(time.time()) // 3600 - 2) * 3600 * 1000
    group = f"test-crash-{uuid.uuid4().hex[:8]}"
    _produce(settings, tenant, device, 0, FIRST, t0)
    log = tmp_path / "sink.log"
    env = {**settings_env(settings), "FLEETSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}",
           "FLEETSTREAM_SINK_GROUP_PREFIX": group, "FLEETSTREAM_SINK_BATCH_SIZE": "200000",
           "FLEETSTREAM_SINK_BATCH_MS": "3000"}

    # first life: every batch waits 10 minutes between write and commit; we kill it in that window
    proc = _sink(settings, {**env, "FLEETSTREAM_SINK_TEST_COMMIT_DELAY_MS": "600000"}, log)
    try:
        wait_for(lambda: "records; commit in" in log.read_text(), timeout=90, what="a written, uncommitted batch")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert not _caught_up(settings, group)  # nothing committed: Kafka will deliver the batch again

    _produce(settings, tenant, device, FIRST, SECOND, t0)
    proc = _sink(settings, env, log)
    try:
        wait_for(lambda: _caught_up(settings, group), timeout=120, interval=1, what="the restarted sink to catch up")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert "already written beyond the committed offsets, skipping" in log.read_text()

    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    try:
        raw, per_minute, per_hour = TelemetryStore(ch).count_points(tenant_id=tenant, device_id=device, metric="v")
        unmerged = ch.query_rows("SELECT count() FROM fleetstream.telemetry WHERE tenant_id = {t:String}",
                                 {"t": tenant})[0][0]
    finally:
        ch.close()
    total = FIRST + SECOND
    assert (raw, per_minute, per_hour) == (total, total, total)
    assert unmerged == total  # not even a replaced duplicate waiting for a merge
