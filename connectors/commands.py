"""Commands to devices a connector serves: consume ``fleetstream.commands``, deliver, answer with a
``CommandAck`` on ``fleetstream.command-acks``. Every protocol delivers commands this way (adr/0122).

Each connector instance reads the whole topic under its consumer group (one per site; one for all MQTT
instances, so each command is published once) and keeps the commands whose protocol is its own and whose
device it ``serves``. An attempt is delivered only while it is fresh: one older than its ``timeout_ms``
(the command agent has retried or given up on it: a connector catching up after downtime) or past the
command's ``expires_at`` is skipped without an answer, so stale writes never reach machinery and the agent
records the command retried, timed out or expired itself. While the connector's link to its devices is
down (``ready_to_deliver``), commands wait for it as long as they stay fresh.

Records are taken in batches: the batch's commands are delivered one after the other on the connector's
loop, then its offsets are committed, so a restart delivers at most one batch again (at least once: a
device may see an attempt twice and de-duplicates by command id, adr/0052)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaException, Message

from runtime.kafka import AUTO_COMMIT_STORED, KafkaLike, clients
from schemas import codec, topics

from .base import BaseConnector, CommandResult
from .uplink import now_ms

log = logging.getLogger(__name__)

# A command whose protocol neither the request nor the device's registry entry names goes over MQTT, the
# platform's default device protocol (adr/0052).
DEFAULT_PROTOCOL = "mqtt"
READY_POLL_S = 0.1
BATCH = 500  # records handled between two synchronous commits
YIELD_S = 0.002  # longest the router holds the connector's loop between two commands


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

    def __init__(self, kafka: KafkaLike, connector: BaseConnector, loop: asyncio.AbstractEventLoop, group_id: str):
        self.connector, self.loop = connector, loop
        self._codec = codec("command")
        # offsets are stored once handled; committed in the background, and at once after a delivery
        self._consumer = clients(kafka).consumer(group_id, AUTO_COMMIT_STORED)
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
                msgs = [m for m in c.consume(BATCH, 0.2) if not m.error()]
                mine = []
                for m in msgs:
                    try:
                        cmd = self._codec.decode(m.value())
                    except Exception as exc:
                        log.warning("commands: skipping undecodable record: %s", exc)
                        continue
                    if protocol_of(cmd) == conn.type_name and conn.serves(cmd["tenant_id"], cmd["device_id"]):
                        mine.append((cmd, deadline(cmd, emitted_at(m))))
                # one hop to the connector's loop per batch; a batch cut short by stop() is not stored, so
                # its fresh commands are delivered again after a restart (at least once, adr/0052)
                if mine and not self._on_loop(self._deliver_all(mine)):
                    break
                for m in msgs:
                    self._store(m)
                if mine:
                    self._commit()
        except Exception:
            log.exception("command consumer stopped")
        finally:
            c.close()

    def _on_loop(self, coro) -> bool:
        """Runs ``coro`` on the connector's loop; False when stop() cut it short."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        while True:
            try:
                fut.result(timeout=0.5)
                return True
            except FutureTimeout:
                if self._stop.is_set():
                    fut.cancel()
                    return False

    def _store(self, m: Message) -> None:
        try:
            self._consumer.store_offsets(m)
        except KafkaException as exc:  # e.g. its partition was revoked meanwhile: another member has it
            log.warning("commands: offset of %s [%d] @%d not stored: %s", m.topic(), m.partition(), m.offset(), exc)

    def _commit(self) -> None:
        """Commits what was handled at once, so a restart delivers again at most one batch's commands (the rest
        of the offsets are committed in the background)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:  # e.g. evicted from the group by a long wait: the next consume rejoins
            log.warning("commands: offsets not committed: %s", exc)

    async def _deliver_all(self, batch: list[tuple[dict, int]]) -> None:
        loop = self.loop
        turn = loop.time() + YIELD_S
        for cmd, until in batch:
            await self._deliver(cmd, until)
            if loop.time() >= turn:  # a connector whose delivery never waits still lets its uplink run
                await asyncio.sleep(0)
                turn = loop.time() + YIELD_S

    async def _deliver(self, cmd: dict, until: int) -> None:
        if not await self._ready(until):
            self.skipped += 1
            log.info("commands: attempt %s of %s to %s/%s is stale or expired; not delivered", cmd["attempt"],
                     cmd["command_id"], cmd["tenant_id"], cmd["device_id"])
            return
        try:
            async with asyncio.timeout(max(1.0, (cmd.get("timeout_ms") or 30_000) / 1000)):
                result = await self.connector.deliver_command(cmd)
        except TimeoutError:
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

    async def _ready(self, until: int) -> bool:
        """Whether the attempt is fresh and the connector can deliver, waiting while it is fresh."""
        while True:
            if now_ms() >= until or self._stop.is_set():
                return False
            if self.connector.ready_to_deliver():
                return True
            await asyncio.sleep(READY_POLL_S)
