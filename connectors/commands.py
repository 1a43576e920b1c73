"""Commands to devices a connector serves: consume ``fleetstream.commands``, deliver, answer with a
``CommandAck`` on ``fleetstream.command-acks``. Every protocol delivers commands this way (adr/0122).

Each connector instance reads the whole topic under its consumer group (one per site; one for all MQTT
instances, so each command is published once) and keeps the commands whose protocol is its own and whose
device it ``serves``. An attempt is delivered only while it is fresh: one older than its ``timeout_ms``
(the command agent has retried or given up on it: a connector catching up after downtime) or past the
command's ``expires_at`` is skipped without an answer, so stale writes never reach machinery and the agent
records the command retried, timed out or expired itself. While the connector's link to its devices is
down (``ready_to_deliver``), commands wait for it as long as they stay fresh."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaException, Message

from schemas import codec, topics

from .base import BaseConnector, CommandResult
from .uplink import now_ms

log = logging.getLogger(__name__)

# A command whose protocol neither the request nor the device's registry entry names goes over MQTT, the
# platform's default device protocol (adr/0052).
DEFAULT_PROTOCOL = "mqtt"
READY_POLL_S = 0.1


def protocol_of(cmd: dict) -> str:
    return cmd.get("protocol") or DEFAULT_PROTOCOL


def deadline(cmd: dict, emitted_ms: int) -> int:
    """Until when an attempt the command agent emitted at ``emitted_ms`` may still be delivered."""
    fresh_until = emitted_ms + (cmd.get("timeout_ms") or 30_000)
    return fresh_until if cmd.get("expires_at") is None else min(fresh_until, cmd["expires_at"])


def emitted_at(m: Message) -> int:
    kind, ts = m.timestamp()
    return now_ms() if kind == TIMESTAMP_NOT_AVAILABLE else ts


class CommandRouter:
    """:param connector: delivers; its ``type_name`` selects commands by their ``protocol`` field.
    :param loop: the connector's event loop, where ``deliver_command`` runs.
    :param group_id: one per site, so two sites each see every command and keep their own devices'."""

    def __init__(self, bootstrap: str, connector: BaseConnector, loop: asyncio.AbstractEventLoop, group_id: str):
        self.connector, self.loop = connector, loop
        self._codec = codec("command")
        # offsets of records that are not ours are committed in the background; a delivered one at once
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id,
                                   "auto.offset.reset": "earliest", "enable.auto.commit": True,
                                   "enable.auto.offset.store": False})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self.delivered = 0
        self.skipped = 0

    def start(self) -> CommandRouter:
        self._consumer.subscribe([topics.COMMANDS.name])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        c, conn = self._consumer, self.connector
        try:
            while not self._stop.is_set():
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                try:
                    cmd = self._codec.decode(m.value())
                except Exception as exc:
                    log.warning("commands: skipping undecodable record: %s", exc)
                    self._done(m, delivered=False)
                    continue
                mine = protocol_of(cmd) == conn.type_name and conn.serves(cmd["tenant_id"], cmd["device_id"])
                if mine:
                    self._handle(cmd, deadline(cmd, emitted_at(m)))
                self._done(m, delivered=mine)
        except Exception:
            log.exception("command consumer stopped")
        finally:
            c.close()

    def _done(self, m: Message, *, delivered: bool) -> None:
        """Stores the record's offset (committed in the background); one that was ours is committed at once,
        so a restart does not deliver it again."""
        try:
            self._consumer.store_offsets(m)
            if delivered:
                self._consumer.commit(m, asynchronous=False)
        except KafkaException as exc:  # e.g. evicted from the group by a long wait: the next poll rejoins
            log.warning("commands: offset of %s [%d] @%d not committed: %s", m.topic(), m.partition(), m.offset(),
                        exc)

    def _handle(self, cmd: dict, until: int) -> None:
        if not self._wait_ready(until):
            self.skipped += 1
            log.info("commands: attempt %s of %s to %s/%s is stale or expired; not delivered", cmd["attempt"],
                     cmd["command_id"], cmd["tenant_id"], cmd["device_id"])
            return
        fut = asyncio.run_coroutine_threadsafe(self.connector.deliver_command(cmd), self.loop)
        try:
            result = fut.result(timeout=max(1.0, (cmd.get("timeout_ms") or 30_000) / 1000))
        except FutureTimeout:
            fut.cancel()
            result = CommandResult(False, "device did not answer in time")
        except Exception as exc:  # a failing write must become a FAILED ack, not a dead consumer
            result = CommandResult(False, f"{type(exc).__name__}: {exc}")
        self.delivered += 1
        if not result.answered:  # nothing reached the device: the agent's timeout decides
            log.info("commands: %s to %s/%s not delivered: %s", cmd["command_id"], cmd["tenant_id"],
                     cmd["device_id"], result.reason)
            return
        self.connector.uplink.command_ack(
            cmd["tenant_id"], cmd["device_id"], cmd["command_id"], result.ack_status, reason=result.reason,
            result_json=json.dumps(result.result) if result.result is not None else None)

    def _wait_ready(self, until: int) -> bool:
        """Whether the attempt is fresh and the connector can deliver, waiting while it is fresh."""
        while True:
            if now_ms() >= until or self._stop.is_set():
                return False
            if self.connector.ready_to_deliver():
                return True
            self._stop.wait(READY_POLL_S)
