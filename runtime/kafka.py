"""Every Kafka client a fleetstream process builds comes from here (adr/0125), with the settings of its use.

``KafkaClients`` is built once per process from ``Settings`` (``settings.kafka``) and handed down in place of
a bootstrap string. Each client's config is, in this order: the bootstrap servers and a client id, the named
profiles of its use (below), then ``security`` (``FLEETSTREAM_KAFKA_SECURITY``: ``security.protocol``,
``ssl.*``, ``sasl.*``), merged into every client last so no profile or override can drop it. Empty security
is PLAINTEXT, the local stack.

The profiles name what a client is for. Tuning (adr/0072), measured on the 2-core machine (2026-11-26): the
broker's CPU follows the number of requests, not records. A consumer left at librdkafka's
``fetch.min.bytes=1`` re-fetches as soon as anything arrives, so at 5,000 msg/s it alone cost the broker
50–80 µs per record; letting the broker hold a fetch until 64 KiB are ready or a short wait passes cost
~20 µs per record for produce and consume together, and 3 µs when records flow freely. Every hot consumer
therefore waits; the wait bounds the latency each hop may add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # confluent_kafka is imported when a client is built, not by every settings user
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from .kafka_security import KafkaSecurity
    from .settings import Settings

Config = Mapping[str, Any]

# -- tuning (adr/0072) --------------------------------------------------------------------------------------
# A consumer of a topic every reading passes through (raw, validated telemetry). 20 ms per hop keeps
# publish → WebSocket (two consumer hops after the connector) well inside its 100 ms p99 budget.
HOT_FETCH_WAIT_MS = 20
FETCH_MIN_BYTES = 65536  # ≈500 telemetry records
HOT_CONSUMER: dict[str, int] = {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": HOT_FETCH_WAIT_MS}

# The telemetry sink: its batches last a second anyway, so a longer wait costs nothing and idles cheaper.
SINK_CONSUMER: dict[str, int] = {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": 100}

# aiokafka's names for the same two settings (the Faust worker's consumer)
HOT_CONSUMER_AIOKAFKA: dict[str, int] = {"fetch_min_bytes": FETCH_MIN_BYTES, "fetch_max_wait_ms": HOT_FETCH_WAIT_MS}
# device-activity acts on whole bundles; 50 ms of waiting is invisible next to a rule's for-duration
AGENT_CONSUMER_AIOKAFKA: dict[str, int] = {**HOT_CONSUMER_AIOKAFKA, "fetch_max_wait_ms": 50}

# A producer of the hot topics: one request per partition leader every few ms, not one per record.
HOT_PRODUCER: dict[str, int | str] = {"linger.ms": 5, "batch.num.messages": 10000}

# -- producers: every platform producer is idempotent with acks=all, so retries never duplicate or reorder a
# device's records. Every producer the factory builds partitions keyed records as Java clients do by default,
# murmur2 of the key (librdkafka's ``murmur2_random``; its own default is CRC-32), the rule the stream agents
# share (schemas/partitioner.py, adr/0141): a ``tenant:device`` key lands on one partition whoever writes it.
KEYED_PARTITIONER: dict[str, str] = {"partitioner": "murmur2_random"}
IDEMPOTENT: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}
# the connectors' uplink: hot topics, lz4 on the wire (it matters on a real network, adr/0072)
UPLINK_PRODUCER: dict[str, Any] = {**IDEMPOTENT, **HOT_PRODUCER, "compression.type": "lz4"}
# commands, shadow updates, outbox entries: a few records at a time, sent almost at once
CONTROL_PRODUCER: dict[str, Any] = {**IDEMPOTENT, "linger.ms": 2}
# validate's batch loop: every batch ends in flush(), which sends at once whatever linger says; a long linger
# keeps the producer from also sending pieces of the batch while it is being produced (2 ms made ~8 produce
# requests per batch); errors are the only delivery reports (no Python callback per delivered record)
BATCH_PRODUCER: dict[str, Any] = {**IDEMPOTENT, "linger.ms": 100,
                                  "queue.buffering.max.messages": 1_000_000, "delivery.report.only.error": True}

# -- consumers ------------------------------------------------------------------------------------------------
# reads without ever committing: compacted-topic followers, probes, replays, tools (no group membership either,
# they assign their partitions); no end-of-partition events (librdkafka's default, relied upon)
READER: dict[str, Any] = {"enable.auto.commit": False, "enable.partition.eof": False}
# a group member that commits after its work is done (at least once); a new group starts at the beginning
MANUAL_COMMIT: dict[str, Any] = {"enable.auto.commit": False, "auto.offset.reset": "earliest"}
# a group member whose work is idempotent enough for librdkafka's background commits
AUTO_COMMIT: dict[str, Any] = {"auto.offset.reset": "earliest", "enable.auto.commit": True}
# ... of only the offsets it stored after handling their records
AUTO_COMMIT_STORED: dict[str, Any] = {**AUTO_COMMIT, "enable.auto.offset.store": False}
# validate's batch loop (adr/0057): a worker killed hard hands its partitions over within ~15 s
PIPE_CONSUMER: dict[str, Any] = {**MANUAL_COMMIT, "session.timeout.ms": 15000, "heartbeat.interval.ms": 3000,
                                 **HOT_CONSUMER}
# the sinks (adr/0065): an idle fetch waits up to 500 ms at the broker, which answers as soon as data arrives
# (fetch.min.bytes 1), so fewer idle round trips and no added latency; a crashed sink's partitions move to a
# live member after 10 s, not the 45 s default. The telemetry sink adds SINK_CONSUMER.
SINK_MEMBER: dict[str, Any] = {**MANUAL_COMMIT, "enable.partition.eof": False, "fetch.wait.max.ms": 500,
                               "partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 10000}
# the gateway's live hub: every validated reading, read now and never committed (the broker answers when
# 64 KiB are ready or 20 ms passed: at most 50 fetches a second at any load)
LIVE_CONSUMER: dict[str, Any] = {**READER, **HOT_CONSUMER}


@dataclass(frozen=True)
class KafkaClients:
    """The factory: ``producer``, ``consumer`` and ``admin`` take profiles (merged left to right, later wins)
    and return confluent-kafka clients; ``faust_options`` is the same for the Faust worker's aiokafka clients;
    ``new_topic`` is every topic the platform creates, with the configured durability (adr/0131).

    :param bootstrap_servers: ``host:port[,host:port…]``.
    :param client_id: the ``client.id`` of clients whose use does not name its own.
    :param security: librdkafka security properties, merged into every client last.
    :param auth: the security settings group (adr/0130); its librdkafka spelling is part of ``security``.
    :param replication_factor: of every topic the platform creates.
    :param min_insync_replicas: of every topic the platform creates (with acks=all: how many copies an
        acknowledged record has)."""

    bootstrap_servers: str
    client_id: str = "fleetstream"
    security: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold a SASL password
    auth: KafkaSecurity | None = field(default=None, repr=False)
    replication_factor: int = 1
    min_insync_replicas: int = 1

    @classmethod
    def from_settings(cls, s: Settings) -> KafkaClients:
        auth = s.kafka_security_settings
        return cls(s.bootstrap_servers, s.kafka_client_id, {**auth.librdkafka(), **s.kafka_security}, auth,
                   s.kafka_replication_factor, s.kafka_min_insync_replicas)

    def config(self, *profiles: Config, client_id: str | None = None) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "client.id": client_id or self.client_id}
        for p in profiles:
            conf.update(p)
        conf.update(self.security)
        return conf

    def producer(self, *profiles: Config, client_id: str | None = None) -> Producer:
        from confluent_kafka import Producer

        return Producer(self.config(KEYED_PARTITIONER, *profiles, client_id=client_id))

    def consumer(self, group_id: str, *profiles: Config, client_id: str | None = None) -> Consumer:
        from confluent_kafka import Consumer

        return Consumer(self.config({"group.id": group_id}, *profiles, client_id=client_id))

    def admin(self, *profiles: Config, client_id: str | None = None) -> AdminClient:
        from confluent_kafka.admin import AdminClient

        return AdminClient(self.config(*profiles, client_id=client_id))

    def topic_config(self, config: Config | None = None) -> dict[str, str]:
        """A platform topic's config: its own settings plus the configured ``min.insync.replicas``."""
        return {**(config or {}), "min.insync.replicas": str(self.min_insync_replicas)}

    def new_topic(self, name: str, partitions: int, config: Config | None = None) -> NewTopic:
        from confluent_kafka.admin import NewTopic

        return NewTopic(name, num_partitions=partitions, replication_factor=self.replication_factor,
                        config=self.topic_config(config))

    def faust_options(self) -> dict[str, Any]:
        """``faust.App`` settings for the brokers, their security and the durability of the topics Faust
        creates (changelogs, repartitions). Faust's consumer fetch tuning is ``AGENT_CONSUMER_AIOKAFKA``
        (streams/faust_fetch.py sets it: Faust exposes no option for it)."""
        extra = set(self.security) - set(self.auth.librdkafka() if self.auth else {})
        if extra:
            # raw librdkafka overrides (FLEETSTREAM_KAFKA_SECURITY) have no aiokafka spelling
            raise ValueError(f"FLEETSTREAM_KAFKA_SECURITY keys {sorted(extra)} reach no Faust client: use the "
                             "FLEETSTREAM_KAFKA_SECURITY_PROTOCOL/SASL_*/SSL_* settings (adr/0130)")
        return {"broker": f"kafka://{self.bootstrap_servers}",
                "topic_replication_factor": self.replication_factor,
                **(self.auth.faust_options() if self.auth else {})}

    def verify(self, timeout_s: float = 30.0) -> None:
        """Raises ``KafkaUnreachable`` with one line naming the cause when the brokers refuse these credentials
        or cannot be reached within ``timeout_s``: a process checks this at start-up instead of retrying a
        wrong password forever (librdkafka would)."""
        import threading
        import time

        from confluent_kafka import KafkaError

        refused: list[str] = []
        done = threading.Event()

        def on_error(err) -> None:
            if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL):
                refused.append(err.str())
                done.set()

        # librdkafka's own log lines would repeat the refusal on stderr: the error callback says it once
        admin = self.admin({"error_cb": on_error, "socket.timeout.ms": 10000, "log_level": 0},
                           client_id=f"{self.client_id}-verify")
        how = self.auth.describe() if self.auth else "PLAINTEXT"
        deadline = time.monotonic() + timeout_s
        while not done.is_set() and time.monotonic() < deadline:
            try:
                if admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic()))).brokers:
                    return
            except Exception:  # noqa: BLE001 - not reachable yet; the error callback says why
                pass
            admin.poll(0)
        if refused:
            reason = refused[0].split(": ", 1)[-1] if ": " in refused[0] else refused[0]
            raise KafkaRefused(f"Kafka at {self.bootstrap_servers} refused {how}: {reason}")
        raise KafkaUnreachable(f"Kafka at {self.bootstrap_servers} did not answer within {timeout_s:.0f}s ({how})")


class KafkaUnreachable(RuntimeError):
    """Start-up check failed: the message is one line, fit for stderr."""


class KafkaRefused(KafkaUnreachable):
    """The brokers answered and refused these credentials: retrying cannot help."""


def create_topic(kafka: KafkaClients, admin: AdminClient, name: str, partitions: int, config: Config | None = None,
                 timeout_s: float = 30.0) -> bool:
    """Creates ``name`` with the factory's durability (adr/0131) unless it exists; True if this call created it.
    One admin round trip either way: an existing topic answers TOPIC_ALREADY_EXISTS."""
    from confluent_kafka import KafkaError, KafkaException

    fut = admin.create_topics([kafka.new_topic(name, partitions, config)], operation_timeout=timeout_s,
                              request_timeout=timeout_s)[name]
    try:
        fut.result(timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


def ensure_tenant_export_topic(kafka: KafkaClients, admin: AdminClient, tenant_id: str, partitions: int,
                               timeout_s: float = 30.0) -> bool:
    """The tenant's export topic (adr/0146) with its policies, unless it exists; True if this call created it."""
    from schemas import topics

    return create_topic(kafka, admin, topics.tenant_export_topic(tenant_id), partitions,
                        topics.TENANT_EXPORT.config(), timeout_s)


def clients(kafka: KafkaClients | str) -> KafkaClients:
    """The factory itself, or one for a bare bootstrap string (PLAINTEXT: tests and tools). Processes pass
    ``settings.kafka`` so their clients carry the configured security."""
    return kafka if isinstance(kafka, KafkaClients) else KafkaClients(kafka)


KafkaLike = KafkaClients | str
