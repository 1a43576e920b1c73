"""The connector contract (adr/0006, extended by adr/0040), in two tiers.

``BaseConnector`` is what the runtime calls: ``type_name``, ``async start()``, ``async stop()``,
``health()`` and, for commands (``connectors/commands.py``, adr/0122), ``serves()``, ``ready_to_deliver()`` and
``async deliver_command()``. Protocols subclass one of two convenience bases:

- ``ListeningConnector`` for push protocols (MQTT, CoAP, HTTP): the peer calls in; the protocol builds an
  ``UplinkContext`` from the authenticated identity and calls ``publish_uplink``.
- ``PollingConnector`` for polled protocols (Modbus): the base owns one scan loop per ``PollGroup`` and
  calls ``poll(group)`` every ``group.interval_s``; an exception in ``poll`` is logged, never fatal.

``publish_uplink`` does the shared work once: the device must be known to the registry and enabled, it
must be within its rate limit, then each reading becomes a telemetry record and each rejected part a
dead letter with its reason and raw bytes. Records leave only through ``UplinkPublisher``.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from runtime import observability as obs

from .canonical import Reading, Rejected
from .errors import (
    ConnectorError,
    DeviceDisabledError,
    DeviceNotRegisteredError,
    QuotaExceededError,
)
from .ratelimit import TokenBuckets
from .registry import ALLOWED_STATUSES
from .uplink import AllDone, Batch, Done, UplinkPublisher

log = logging.getLogger(__name__)

__all__ = ["ConnectorHealth", "UplinkContext", "CommandResult", "Admission", "BaseConnector",
           "ListeningConnector", "PollingConnector", "PollGroup"]


@dataclass
class ConnectorHealth:
    healthy: bool
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x (one per message, adr/0215)
class UplinkContext:
    """Who sent a message, as the protocol authenticated it: never read from the payload. Not changed after
    it is made."""

    tenant_id: str
    device_id: str
    origin: str  # the original address: MQTT topic, URL path, ``modbus://host:port/unit/…``
    received_ms: int


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What ``deliver_command`` did; ``CommandRouter`` turns it into the ``CommandAck`` it writes (adr/0122).

    Synchronous protocols (Modbus, OPC-UA: the write is the outcome) answer ``ok`` → SUCCEEDED or not →
    FAILED. Asynchronous protocols (MQTT, CoAP: the device answers later, over its own channel) answer
    ``sent()`` → SENT once the command is handed to the device's transport, and write the device's own
    answer as a ``CommandAck`` when it comes. ``not_delivered(reason)`` writes no ack at all: nothing
    reached the device, and the command agent's timeout retries the attempt or ends the command."""

    ok: bool
    reason: str | None = None
    result: dict[str, Any] | None = None
    status: str | None = None  # CommandAck status; None: SUCCEEDED/FAILED from ok
    answered: bool = True  # False: no CommandAck is written

    @classmethod
    def sent(cls) -> CommandResult:
        return cls(True, status="SENT")

    @classmethod
    def not_delivered(cls, reason: str) -> CommandResult:
        return cls(False, reason, answered=False)

    @property
    def ack_status(self) -> str:
        return self.status or ("SUCCEEDED" if self.ok else "FAILED")


class Registry(Protocol):
    def get(self, tenant_id: str, device_id: str) -> dict | None: ...


class Admission:
    """Is this device allowed to send now? One check per message, shared by every protocol.

    :param registry: the device registry view (``connectors.registry.DeviceRegistry``).
    :param limiter: per-device token buckets, counted in readings; None: no limit.
    :param require_registered: refuse devices the registry does not know. MQTT turns this off because
        the broker already admitted the device by its certificate (adr/0003) and the registry may lag.
    """

    def __init__(self, registry: Registry | None, limiter: TokenBuckets | None = None, *,
                 require_registered: bool = True):
        self.registry, self.limiter, self.require_registered = registry, limiter, require_registered

    def check(self, tenant_id: str, device_id: str, readings: int = 1, *,
              redelivered: bool = False) -> ConnectorError | None:
        """:param redelivered: the platform hands this message over again (MQTT DUP: the broker resends what
            a connector received and did not acknowledge); it was charged to the device's bucket when it first
            arrived, so the rate limit does not apply again (adr/0104)."""
        entry = self.registry.get(tenant_id, device_id) if self.registry is not None else None
        if entry is None:
            if self.require_registered:
                return DeviceNotRegisteredError(f"device {device_id!r} is not registered for this tenant")
        elif entry.get("status") not in ALLOWED_STATUSES:
            return DeviceDisabledError(f"device {device_id!r} is {entry.get('status')}")
        if self.limiter is not None and readings and not redelivered:
            wait = self.limiter.take(f"{tenant_id}:{device_id}", readings)
            if wait:
                return QuotaExceededError(f"device {device_id!r} is over its rate limit of "
                                          f"{self.limiter.rate:g} readings/s", retry_after=wait)
        return None


def _failed(done: Done | Batch | None, err: Exception) -> None:
    """Reports a write that never reached the producer to whoever waits for it."""
    if type(done) is Batch:
        done.fail(err)
    elif done is not None:
        done(err)


class BaseConnector(abc.ABC):
    """What the runtime calls. Subclass ``ListeningConnector`` or ``PollingConnector`` instead.

    :param uplink: where records go; built by the process entry point from settings.
    :param admission: registry and rate-limit checks; None admits every device (tools, benchmarks).
    """

    type_name: ClassVar[str]

    def __init__(self, uplink: UplinkPublisher, admission: Admission | None = None):
        self.uplink = uplink
        self.admission = admission
        self.stats: dict[str, int] = {"messages": 0, "readings": 0, "rejected": 0}

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect to the peer(s) and begin emitting records. Returns once running."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop taking input, flush what was accepted to Kafka, disconnect."""

    @abc.abstractmethod
    def health(self) -> ConnectorHealth:
        """Cheap, non-blocking: is the connector connected and moving data?"""

    def serves(self, tenant_id: str, device_id: str) -> bool:
        """Whether commands for this device are this connector instance's to deliver."""
        return False

    def ready_to_deliver(self) -> bool:
        """False while the connector's own link to its devices is down (MQTT: the broker connection): the
        router then holds commands, unanswered, until it is back or they go stale (adr/0122)."""
        return True

    async def deliver_command(self, command: dict[str, Any]) -> CommandResult:
        """Deliver a ``schemas/avro/command.avsc`` record to its device. Called by ``CommandRouter`` only for
        fresh attempts of this protocol to devices this instance ``serves``; the router turns the result
        into a ``CommandAck`` (see ``CommandResult`` for synchronous and asynchronous protocols)."""
        return CommandResult(False, f"{self.type_name} connectors cannot deliver commands")

    # -- what protocols call ---------------------------------------------------------------------------
    def publish_uplink(self, ctx: UplinkContext, raw: bytes, readings: Sequence[Reading],
                       rejected: Iterable[Rejected] = (), done: Done | Batch | None = None, *,
                       redelivered: bool = False) -> ConnectorError | None:
        """Admit, then write readings as telemetry and rejects as dead letters.

        ``done`` is called once, after Kafka confirmed every record written for this message (or with the
        first error). A refused message is dead-lettered whole and the refusal returned, so the protocol
        can also answer its peer (HTTP 404/403/429, CoAP 4.04/4.03/4.29).

        Total (adr/0103): a reading the encoder cannot write is dead-lettered instead; a record the producer
        refuses outright ends ``done`` with that error (the peer is not answered "stored"). Nothing raises, so
        one message cannot take the others of its batch down with it."""
        self.stats["messages"] += 1
        rejected = list(rejected)
        refusal = self.admission.check(ctx.tenant_id, ctx.device_id, len(readings), redelivered=redelivered) \
            if self.admission is not None else None
        if refusal is not None:
            self.stats["rejected"] += 1
            self._dead_letter(ctx, refusal.code, str(refusal), raw, done)
            return refusal
        # a Batch (MQTT: one per burst of messages) collects every record itself; else one AllDone per message
        pending = done if done is None or type(done) is Batch else AllDone(len(readings) + len(rejected), done)
        self.stats["readings"] += len(readings)
        self.stats["rejected"] += len(rejected)
        uplink = self.uplink
        for r in readings:
            try:
                uplink.telemetry(ctx.tenant_id, ctx.device_id, r.event_time, r.values, ctx.received_ms,
                                 pending, count=False)
            except Exception as exc:  # e.g. a value the Avro schema cannot take from a protocol adaptor
                log.warning("%s: a reading of %s/%s could not be written: %r", self.type_name, ctx.tenant_id,
                            ctx.device_id, exc)
                self._dead_letter(ctx, "invalid_payload", f"the reading could not be encoded: "
                                  f"{type(exc).__name__}: {exc}", _reading_raw(r, raw), pending)
        if readings:
            if type(done) is Batch:  # counted once per tenant per burst
                done.count(ctx.tenant_id, len(readings))
            else:
                obs.record_ingest(uplink.source, ctx.tenant_id, len(readings))
        for bad in rejected:
            self._dead_letter(ctx, bad.code, bad.reason, bad.raw, pending)
        return None

    def _dead_letter(self, ctx: UplinkContext, code: str, reason: str, raw: bytes,
                     done: Done | Batch | None) -> None:
        try:
            self.uplink.dead_letter(code=code, reason=reason, raw=raw, tenant_id=ctx.tenant_id,
                                    device_id=ctx.device_id, origin=ctx.origin, done=done)
        except Exception as exc:  # the producer refused even the dead letter: the message is not answered
            log.error("%s: dead letter for %s/%s not written: %r", self.type_name, ctx.tenant_id,
                      ctx.device_id, exc)
            _failed(done, exc)

    def report_event(self, tenant_id: str, device_id: str, event_type: str, *, reason: str | None = None,
                     details: dict[str, str] | None = None, at_ms: int | None = None) -> None:
        """:param at_ms: when it happened, if not now (adr/0151: OFFLINE stamped with the last reading)."""
        extra = {} if at_ms is None else {"at_ms": at_ms}
        self.uplink.device_event(tenant_id, device_id, event_type, reason=reason, details=details, **extra)


def _reading_raw(r: Reading, raw: bytes) -> bytes:
    try:
        return json.dumps({"ts": r.event_time, "values": r.values}, default=repr).encode()
    except Exception:
        return raw


class ListeningConnector(BaseConnector, abc.ABC):
    """Push protocols: implement ``start``/``stop``/``health``; call ``publish_uplink`` per message."""


@dataclass
class PollGroup:
    """Points read together on one schedule (e.g. one Modbus unit's points sharing an interval)."""

    name: str
    interval_s: float
    payload: Any = None  # the protocol's own description of what to read


class PollingConnector(BaseConnector, abc.ABC):
    """Polled protocols: implement ``poll_groups()``, ``async poll(group)`` and optionally the
    ``on_start``/``on_stop`` hooks. The base runs one task per group on a fixed-rate schedule (a slow
    read skips the missed ticks instead of bunching them up)."""

    def __init__(self, uplink: UplinkPublisher, admission: Admission | None = None):
        super().__init__(uplink, admission)
        self._tasks: list[asyncio.Task] = []
        self.polls = 0

    @abc.abstractmethod
    def poll_groups(self) -> list[PollGroup]: ...

    @abc.abstractmethod
    async def poll(self, group: PollGroup) -> None:
        """Read one group and publish its readings; failures become device events, not exceptions."""

    async def on_start(self) -> None:
        pass

    async def on_stop(self) -> None:
        pass

    async def start(self) -> None:
        await self.on_start()
        self._tasks = [asyncio.create_task(self._scan(g), name=f"poll-{g.name}") for g in self.poll_groups()]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.on_stop()
        await asyncio.to_thread(self.uplink.flush)

    async def _scan(self, group: PollGroup) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.poll(group)
                self.polls += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: poll of %s failed", self.type_name, group.name)
            due += group.interval_s
            now = loop.time()
            if due < now:
                due = now + group.interval_s - ((now - due) % group.interval_s)
            await asyncio.sleep(due - now)
