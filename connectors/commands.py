"""Commands to devices a connector serves: consume ``fleetstream.commands``, deliver, answer with a
``CommandAck`` on ``fleetstream.command-acks``.

Each connector instance reads the whole topic under its own consumer group (one per site), keeps the
commands whose ``protocol`` is its own and whose device it ``serves``, and skips expired ones with a
FAILED ack, so a connector that was down does not replay stale writes to machinery."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout

from runtime.kafka import MANUAL_COMMIT, KafkaLike, clients
from schemas import codec, topics

from .base import BaseConnector, CommandResult
from .uplink import now_ms

log = logging.getLogger(__name__)


def expired(cmd: dict, now: int) -> bool:
    deadline = cmd.get("expires_at") or (cmd["created_at"] + (cmd.get("timeout_ms") or 30_000))
    return now > deadline


class CommandRouter:
    """:param connector: delivers; its ``type_name`` selects commands by their ``protocol`` field.
    :param loop: the connector's event loop, where ``deliver_command`` runs.
    :param group_id: one per site, so two sites each see every command and keep their own devices'."""

    def __init__(self, kafka: KafkaLike, connector: BaseConnector, loop: asyncio.AbstractEventLoop, group_id: str):
        self.connector, self.loop = connector, loop
        self._codec = codec("command")
        self._consumer = clients(kafka).consumer(group_id, MANUAL_COMMIT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self.delivered = 0

    def start(self) -> CommandRouter:
        self._consumer.subscribe([topics.COMMANDS.name])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        c = self._consumer
        try:
            while not self._stop.is_set():
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                try:
                    cmd = self._codec.decode(m.value())
                except Exception as exc:
                    log.warning("commands: skipping undecodable record: %s", exc)
                    continue
                if cmd.get("protocol") == self.connector.type_name and \
                        self.connector.serves(cmd["tenant_id"], cmd["device_id"]):
                    self._handle(cmd)
                c.commit(m, asynchronous=False)
        except Exception:
            log.exception("command consumer stopped")
        finally:
            c.close()

    def _handle(self, cmd: dict) -> None:
        up = self.connector.uplink
        if expired(cmd, now_ms()):
            result = CommandResult(False, "expired before it could be delivered")
        else:
            fut = asyncio.run_coroutine_threadsafe(self.connector.deliver_command(cmd), self.loop)
            try:
                result = fut.result(timeout=max(1.0, (cmd.get("timeout_ms") or 30_000) / 1000))
            except FutureTimeout:
                fut.cancel()
                result = CommandResult(False, "device did not answer in time")
            except Exception as exc:  # a failing write must become a FAILED ack, not a dead consumer
                result = CommandResult(False, f"{type(exc).__name__}: {exc}")
        self.delivered += 1
        up.command_ack(cmd["tenant_id"], cmd["device_id"], cmd["command_id"],
                       result.status or ("SUCCEEDED" if result.ok else "FAILED"), reason=result.reason,
                       result_json=json.dumps(result.result) if result.result is not None else None)
