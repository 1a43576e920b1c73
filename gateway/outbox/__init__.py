"""Transactional outbox (adr/0108): control-plane records reach Kafka exactly when their change commits.

``store.enqueue`` inside the change's transaction; ``Outbox.wait`` after the commit when the caller should
answer only once Kafka has the record (a device provisioned a moment ago must find its registry entry ahead
of its first reading). The relay thread publishes; one per process, one leader across processes.
"""

from __future__ import annotations

import logging
import threading
import time

from gateway.db.session import Database
from runtime.kafka import KafkaLike

from . import store
from .relay import OutboxRelay
from .store import MAX_VALUE_BYTES, enqueue, enqueue_many

log = logging.getLogger(__name__)

WAIT_S = 5.0  # the default of Settings.outbox_wait_s


class Outbox:
    """:param db: a pool for ``wait`` (one short query per wake-up).
    :param dsn: application-role DSN for the relay's own session. :param kafka: the process's Kafka clients.
    :param wait_s: how long ``wait`` waits by default (``Settings.outbox_wait_s``)."""

    def __init__(self, db: Database, dsn: str, kafka: KafkaLike, *, producer_config: dict | None = None,
                 wait_s: float = WAIT_S):
        self.db = db
        self.wait_s = wait_s
        self._published = threading.Condition()
        self.relay = OutboxRelay(dsn, kafka, on_published=self._wake, producer_config=producer_config)

    def start(self) -> Outbox:
        self.relay.start()
        return self

    def close(self) -> None:
        self.relay.stop()

    def _wake(self, _ids: list[int]) -> None:
        with self._published:
            self._published.notify_all()

    def wait(self, ids: list[int], timeout: float | None = None) -> bool:
        """True once every id is published. False after ``timeout`` (default ``wait_s``): the change is
        committed and the relay (here or in another replica) will still publish it; the caller answers anyway."""
        timeout = self.wait_s if timeout is None else timeout
        pending = [i for i in ids if i is not None]
        deadline = time.monotonic() + timeout
        while pending:
            with self.db.pool.connection(timeout=timeout) as conn:
                pending = sorted(store.unpublished(conn, pending))
            left = deadline - time.monotonic()
            if not pending:
                break
            if left <= 0:
                log.warning("outbox: %d record(s) not published after %.1fs; the relay will finish them",
                            len(pending), timeout)
                return False
            # this process's relay wakes us at once; another replica's relay is seen by polling
            with self._published:
                self._published.wait(min(left, 0.05))
        return True


__all__ = ["MAX_VALUE_BYTES", "Outbox", "OutboxRelay", "enqueue", "enqueue_many"]
