"""The outbox relay (adr/0108): publishes committed outbox rows to Kafka in id order and marks them.

Every gateway process runs one; a relay publishes only while it holds a Postgres advisory lock, taken for
one round (read pending rows, produce them, wait for every delivery report, mark them) and released after
it. So one relay publishes at a time, none has records in flight when another starts, and a relay that dies
mid-round frees the lock with its session; the others, woken by the insert notification or every
``IDLE_WAIT_S``, go on from the first unmarked row. Publishing rows in id order keeps the order of each key:
writers of one key serialise on that key's row lock before they insert, so their ids are in commit order
(adr/0108).

Delivery is at least once: a crash after Kafka took a record but before the row was marked publishes it
again. Every record is a whole state (registry, tenants, rules) or carries its own id (commands), so a
repeat is harmless. A record that fails is retried after a pause; later rows of the same key in that batch
are not marked, so they are published again after it and the last record of the key stays the newest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from confluent_kafka import KafkaException

from runtime.kafka import CONTROL_PRODUCER, KafkaLike, clients

log = logging.getLogger(__name__)

LOCK_KEY = 7262002  # pg advisory lock: the one publishing relay (migrate.py uses 7262001)
CHANNEL = "fleetstream_outbox"
BATCH = 500
IDLE_WAIT_S = 1.0  # longest wait for a notification: also how soon a standby notices a dead leader
FAILURE_PAUSE_S = 1.0
PURGE_EVERY_S = 600
KEEP_PUBLISHED = "1 day"
# libpq keepalives: a relay whose connection silently died gives up its leadership within ~10 s
CONNECT_KW = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
              "tcp_user_timeout": 10_000, "connect_timeout": 5}


class OutboxRelay(threading.Thread):
    """:param dsn: application-role DSN (the relay uses definer functions only).
    :param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param on_published: called with the ids just marked (wakes waiting requests in this process).
    :param producer_config: extra librdkafka settings (tests shorten ``message.timeout.ms``)."""

    def __init__(self, dsn: str, kafka: KafkaLike, *, on_published: Callable[[list[int]], None] | None = None,
                 producer_config: dict | None = None):
        super().__init__(name="outbox-relay", daemon=True)
        self.dsn = dsn
        self.on_published = on_published or (lambda ids: None)
        # the factory's producer partitions by murmur2 of the key, the rule every platform producer and the
        # stream agents share (schemas/partitioner.py); idempotence keeps the order within a partition on retries
        self._producer = clients(kafka).producer(CONTROL_PRODUCER, {"message.timeout.ms": 30_000},
                                                 producer_config or {}, client_id="fleetstream-outbox")
        self.stats = {"published": 0, "failed": 0, "batches": 0, "rounds": 0}
        self._stopping = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._purged_at = 0.0

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(10)
        self._producer.flush(5)
        del self._producer  # librdkafka keeps its connections until the handle is freed

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn = self._connection()
                if conn.execute("select pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
                    try:
                        self.stats["rounds"] += 1
                        failed = self.drain(conn)
                        self._purge(conn)
                    finally:
                        conn.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
                    if failed:  # Kafka refused: do not spin on it
                        self._stopping.wait(FAILURE_PAUSE_S)
                        continue
                for _ in conn.notifies(timeout=IDLE_WAIT_S, stop_after=1):
                    pass
            except psycopg.Error as exc:
                self._lost(exc)
                self._stopping.wait(FAILURE_PAUSE_S)
            except Exception:
                log.exception("outbox relay error; retrying")
                self._stopping.wait(FAILURE_PAUSE_S)
        self._close()

    def drain(self, conn: psycopg.Connection) -> int:
        """Publishes pending rows batch by batch until none is left or one fails; returns how many failed."""
        while not self._stopping.is_set():
            rows = conn.execute("select * from outbox_pending(%s)", (BATCH,)).fetchall()
            if not rows:
                return 0
            ok, failed = self.publish(rows)
            if ok:
                conn.execute("select outbox_mark_published(%s)", (ok,))
                self.stats["published"] += len(ok)
                self.on_published(ok)
            for error, ids in failed.items():
                conn.execute("select outbox_mark_failed(%s, %s)", (ids, error))
            self.stats["batches"] += 1
            if failed:
                n = sum(len(v) for v in failed.values())
                self.stats["failed"] += n
                log.warning("outbox relay: %d record(s) not delivered (%s); retrying", n, "; ".join(failed))
                return n
        return 0

    def publish(self, rows: list) -> tuple[list[int], dict[str, list[int]]]:
        """Produces ``(id, topic, key, value, attempts)`` rows in order and waits for every delivery report.
        Returns the ids to mark published and the failed ids by error. A row after a failed row of the same
        key is not marked: it is published again behind the retried one, keeping the key's last record newest."""
        results: dict[int, str | None] = {}

        def report(row_id: int):
            return lambda err, _msg: results.__setitem__(row_id, None if err is None else str(err))

        for row_id, topic, key, value, _attempts in rows:
            while True:
                try:
                    self._producer.produce(topic, value, bytes(key), on_delivery=report(row_id))
                    break
                except BufferError:
                    self._producer.poll(0.05)
                except KafkaException as exc:  # e.g. an unknown topic: a report of its own
                    results[row_id] = str(exc)
                    break
        while len(results) < len(rows) and not self._stopping.is_set():
            self._producer.poll(0.1)  # message.timeout.ms bounds this: every record gets a report
        ok: list[int] = []
        failed: dict[str, list[int]] = {}
        blocked: set[tuple[str, bytes]] = set()
        for row_id, topic, key, _value, _attempts in rows:
            err = results.get(row_id, "relay stopping")
            k = (topic, bytes(key))
            if err is None and k not in blocked:
                ok.append(row_id)
            else:
                blocked.add(k)
                if err is not None:
                    failed.setdefault(err, []).append(row_id)
        return ok, failed

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, **CONNECT_KW)
            self._conn.execute(f"listen {CHANNEL}")
        return self._conn

    def _purge(self, conn: psycopg.Connection) -> None:
        if time.monotonic() - self._purged_at > PURGE_EVERY_S:
            self._purged_at = time.monotonic()
            conn.execute("select outbox_purge(%s::interval)", (KEEP_PUBLISHED,))

    def _lost(self, exc: Exception) -> None:
        log.warning("outbox relay lost its database session (%s); reconnecting", exc)
        # a round cut short is published again by whichever relay goes next: do not send its records late
        self._producer.purge(in_queue=True, in_flight=False)
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
