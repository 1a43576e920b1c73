"""Starts every ClickHouse sink of a process: telemetry, device events, alerts, command history and rejections.

Hosted by the gateway in embedded (chdb) mode, or by ``fleetstream run sink`` against a server (adr/0005,
adr/0060). Each sink is its own consumer-group member, so a slow table never holds up telemetry.
"""

from __future__ import annotations

import hashlib

from runtime.kafka import SINK_CONSUMER, KafkaLike
from schemas import topics
from sinks.base import BatchingSink

from .client import ClickHouse
from .latest import LatestCache
from .sink import ClickHouseRecordSink, ClickHouseRejectionSink, ClickHouseTelemetrySink


def build_sinks(ch: ClickHouse, *, kafka: KafkaLike, group_prefix: str = "fleetstream-sink-clickhouse",
                batch_size: int = 5000, batch_ms: int = 250, commit_delay_ms: int = 0,
                latest: LatestCache | None = None) -> list[BatchingSink]:
    """:param latest: the hosting process's latest-values cache, told what each telemetry insert touched."""
    common = {"kafka": kafka, "batch_size": batch_size, "batch_ms": batch_ms}
    telemetry = ClickHouseTelemetrySink(ch, on_written=latest.written if latest is not None else None)

    def member(group: str, extra: dict | None = None) -> dict:
        return {"group_id": group, "consumer_config": {**(extra or {}), **static_member(ch, group)}}

    return [
        BatchingSink(telemetry, topic=topics.TELEMETRY.name, record="telemetry", commit_delay_ms=commit_delay_ms,
                     **member(group_prefix, SINK_CONSUMER), **common),
        BatchingSink(ClickHouseRecordSink(ch, "device_events"), topic=topics.DEVICE_EVENTS.name,
                     record="device_event", **member(f"{group_prefix}-events"), **common),
        BatchingSink(ClickHouseRecordSink(ch, "alerts"), topic=topics.ALERTS.name, record="alert",
                     **member(f"{group_prefix}-alerts"), **common),
        BatchingSink(ClickHouseRecordSink(ch, "command_history"),
                     topics=[topics.COMMANDS.name, topics.COMMAND_ACKS.name],
                     **member(f"{group_prefix}-commands"), **common),
        BatchingSink(ClickHouseRejectionSink(ch), topic=topics.DEAD_LETTER.name, record="dead_letter",
                     **member(f"{group_prefix}-rejections"), **common),
    ]


def static_member(ch: ClickHouse, group: str) -> dict[str, str]:
    """A sink writing to an embedded store is a static group member (adr/0208): chdb lets one process open a
    store, so the store names the one process that can be this group's member. Restarted after a crash, it
    takes its partitions back at once instead of waiting out its dead self's session (10 s). A server is
    shared by several sink processes of one group: no static identity there."""
    if not ch.embedded:
        return {}
    store = hashlib.sha256(ch.dsn.encode()).hexdigest()[:16]
    return {"group.instance.id": f"{group}.{store}"}


def run_forever(ch: ClickHouse, stop, **kw) -> list[BatchingSink]:
    """Starts the sinks and blocks until ``stop`` (a threading.Event) is set; then stops them."""
    sinks = build_sinks(ch, **kw)
    for s in sinks:
        s.start()
    try:
        while not stop.wait(1):
            dead = [s.name for s in sinks if not s.is_alive()]
            if dead:
                raise RuntimeError(f"sink threads died: {dead}")
    finally:  # each sink's last wait and clean-up side by side, as the gateway stops them
        for s in sinks:
            s.signal_stop()
        for s in sinks:
            s.stop()
    return sinks
