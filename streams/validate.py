"""Validate agent: connectors' raw telemetry → checked, enriched telemetry for sinks, rules and live clients.

Connectors already parsed the device payload; this stage re-checks what every consumer relies on
(tenant-first identity, event-time skew, value types) whatever connector produced it, enforces the device
registry (unknown, suspended and decommissioned devices' data is refused) and enriches each reading with
its device type and tags. A reading that breaks its device type's metric declarations is refused too
(adr/0182). Anything refused goes to the dead-letter topic with a reason (adr/0051).

A tenant that exports its telemetry (adr/0146) gets each of its validated readings once more on its own topic
``fleetstream.export.<tenant_id>``: same key, same value bytes as on ``fleetstream.telemetry``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence

import faust
import mode
from confluent_kafka import KafkaError, KafkaException, Message

from runtime.kafka import ensure_tenant_export_topic
from runtime.settings import Settings
from schemas import ValueDeserializationError, codec, device_key, topics
from schemas.codec import TELEMETRY_PLAIN_TAIL, telemetry_tail
from schemas.metric_types import reading_problem
from schemas.partitioner import partition_for

from . import bundles
from .batch_pipe import BatchPipe, Output
from .registry import ACCEPTING, RegistryView

log = logging.getLogger(__name__)

BATCH = 5000
# no extra wait for company: the consumer's fetches already arrive as batches of up to 20 ms (adr/0072),
# and a linger here only added its own delay to every reading on the way to live clients
LINGER_S = 0.0
OUT, DLQ = topics.TELEMETRY.name, topics.DEAD_LETTER.name
REGISTRY_WAIT_S = 30
REGISTRY_SYNC_S = 2.0
# refusals that may only mean the views are behind the control plane: checked again after a sync
RECHECK = frozenset({"unknown_device", "tenant_suspended", "tenant_deleted", "type_pending"})
# a tenant whose export topic Kafka refuses to create (not a passing failure): its copies are skipped this long
EXPORT_REFUSED_S = 60.0


def check(rec: dict, now_ms: int, max_skew_ms: int) -> tuple[str, str] | None:
    """Returns (code, reason) when the record must not reach consumers."""
    if not rec["tenant_id"] or not rec["device_id"]:
        return "missing_identity", "record has no tenant or device"
    if not rec["values"]:
        return "no_values", "record carries no metric values"
    if rec["event_time"] > now_ms + max_skew_ms:
        return "clock_skew", f"event time {rec['event_time']} is ahead of the platform clock by more than {max_skew_ms} ms"
    for name, v in rec["values"].items():
        if isinstance(v, float) and not math.isfinite(v):
            return "wrong_type", f"{name} is not a finite number"
    return None


def enforce(rec: dict, registry: RegistryView, synced: bool = False) -> tuple[str, str] | None:
    """Registry check; fills ``device_type`` and ``tags`` in ``rec`` when the device may send.

    A device with no entry is refused only once the view has caught up and the control plane publishes
    entries for that tenant; until then it passes unenriched (a tenant whose devices predate registry
    publishing keeps working, adr/0051), after a sync has looked for its entry (``synced``). Any reading of a suspended or deleted tenant is refused (adr/0107).
    A device whose type's entry may not have been read yet is ``type_pending`` (checked again after a sync,
    ``synced``), so a type's declarations are never skipped because its entry is behind the device's
    (adr/0182)."""
    tenant_status = registry.tenant_refused(rec["tenant_id"])
    if tenant_status is not None:
        return f"tenant_{tenant_status}", f"tenant {rec['tenant_id']!r} is {tenant_status}; its data is refused"
    info = registry.lookup(rec["tenant_id"], rec["device_id"])
    if info is None:
        if registry.caught_up.is_set() and registry.tenant_published(rec["tenant_id"]):
            return "unknown_device", f"device {rec['device_id']!r} is not registered for this tenant"
        # a new tenant's first device: its entry (the tenant's first) may be behind its reading, and passing
        # it unenriched would skip its type's declarations; a tenant with no entries after a sync passes
        if not synced and registry.tenant_pending(rec["tenant_id"]):
            return "unknown_device", f"device {rec['device_id']!r} not read yet"
        if synced:
            registry.tenant_looked_for(rec["tenant_id"])
        return None
    if info.status not in ACCEPTING:
        return f"device_{info.status}", f"device {rec['device_id']!r} is {info.status}; its data is refused"
    if registry.type_pending(rec["tenant_id"], info.device_type):
        if not synced:
            return "type_pending", f"device type {info.device_type!r} not read yet"
        registry.type_looked_for(rec["tenant_id"], info.device_type)
    declared = registry.declared_metrics(rec["tenant_id"], info.device_type)
    if declared:
        problem = reading_problem(rec["values"], declared)
        if problem is not None:
            return problem
    rec["device_type"], rec["tags"] = info.device_type, list(info.tags)
    return None


class Validator:
    """Turns one batch of raw records into what to produce: each record to ``fleetstream.telemetry`` (as it
    came, or enriched) or to the dead-letter topic, in input order per device; a validated reading of a tenant
    that exports (adr/0146) once more to its export topic, right after; and, when ``bundle_topic`` is set, the
    validated readings once more as one bundle per partition for device-activity (bundles.py).

    :param ensure_export: creates a tenant's export topic if it is missing (given the tenant id), before the
        first copy to it: the brokers do not create topics on first write, and a copy to a missing topic would
        fail its whole batch. None: the topics are taken to exist (unit tests)."""

    def __init__(self, s: Settings, registry: RegistryView, bundle_topic: str | None = None, partitions: int = 0,
                 ensure_export: Callable[[str], object] | None = None):
        self.registry, self.max_skew_ms = registry, s.max_clock_skew_s * 1000
        self.tcodec, self.dcodec = codec("telemetry"), codec("dead_letter")
        self.bundle_topic, self.partitions = bundle_topic, partitions
        self._tails: dict[tuple[str | None, tuple[str, ...]], bytes] = {}
        # the tenant view's live set: one lookup per reading (views that follow no tenants export nothing)
        self.exporting = getattr(registry, "exporting", frozenset())
        self.ensure_export = ensure_export
        self._export_topics: dict[str, str] = {}  # tenant → its export topic, known to exist
        self._export_refused: dict[str, float] = {}  # tenant → when Kafka refused to create its topic
        self.export_stats = {"exported": 0, "export_skipped": 0}

    def wait_for_registry(self) -> None:
        if not self.registry.caught_up.wait(REGISTRY_WAIT_S):
            log.warning("registry view not caught up after %ss; unknown devices pass until it is", REGISTRY_WAIT_S)
        tenants = getattr(self.registry, "tenant_view", None)
        if tenants is not None and not tenants.caught_up.wait(REGISTRY_WAIT_S):
            log.warning("tenant view not caught up after %ss; suspended tenants pass until it is", REGISTRY_WAIT_S)

    def process(self, msgs: Sequence[Message]) -> list[Output]:
        now = time.time_ns() // 1_000_000
        out: list[Output] = []
        validated: list[tuple[bytes, bytes, dict]] = []
        deferred: list[tuple[bytes, dict, bytes | None, bool]] = []
        held: set[bytes | None] = set()  # a device with a deferred record keeps its order behind it
        decode, registry, max_skew_ms, route = self.tcodec.decode, self.registry, self.max_skew_ms, self._route
        for m in msgs:
            raw = m.value()
            try:
                rec = decode(raw)
            except ValueDeserializationError as exc:
                out.append((DLQ, None, self.dcodec.encode(_dead(None, "undecodable", str(exc), raw, now))))
                continue
            plain = rec["device_type"] is None and not rec["tags"]  # as connectors write it: not enriched yet
            problem = check(rec, now, max_skew_ms)
            key = device_key(rec["tenant_id"], rec["device_id"]) if rec["tenant_id"] and rec["device_id"] else None
            if problem is None and key in held:
                deferred.append((raw, rec, key, plain))
                continue
            if problem is None:
                problem = enforce(rec, registry)
                if problem and problem[0] in RECHECK:
                    deferred.append((raw, rec, key, plain))
                    held.add(key)
                    continue
            route(out, validated, raw, rec, key, problem, now, plain)
        if deferred:
            # A brand-new device's first reading can overtake its registry entry, and a resumed tenant's
            # first reading its tenant entry (independent consumers): catch the views up to the topics as
            # they are now, once per batch, before refusing anyone as unknown or suspended.
            self._sync_views()
            for raw, rec, key, plain in deferred:
                route(out, validated, raw, rec, key, enforce(rec, registry, synced=True), now, plain)
        if self.bundle_topic and validated:
            out.extend(self._bundles(validated))
        return out

    def _sync_views(self) -> None:
        """Syncs until the views have read the topics' current ends: on a loaded machine that can take longer
        than one try, and judging the deferred readings on a view still behind would skip a type's
        declarations. Past ``REGISTRY_WAIT_S`` (Kafka not answering) they are judged on the view as it is."""
        deadline = time.monotonic() + REGISTRY_WAIT_S
        while not self.registry.sync(REGISTRY_SYNC_S):
            if time.monotonic() >= deadline:
                log.warning("registry views not synced within %ss; judging deferred readings on them as they are",
                            REGISTRY_WAIT_S)
                return

    def _route(self, out: list[Output], validated: list, raw: bytes, rec: dict, key: bytes | None,
               problem: tuple[str, str] | None, now: int, plain: bool) -> None:
        if problem:
            out.append((DLQ, key, self.dcodec.encode(_dead(rec, *problem, raw, now))))
            return
        if rec["device_type"] is None and not rec["tags"]:
            value = raw  # as it came, whichever version of the schema wrote it
        elif plain and self.tcodec.matches(raw):  # the tail swap needs the repo schema's layout
            value = raw[:-len(TELEMETRY_PLAIN_TAIL)] + self._tail(rec["device_type"], rec["tags"])
        else:
            value = self.tcodec.encode(rec)
        out.append((OUT, key, value))
        validated.append((key, value, rec))
        if rec["tenant_id"] in self.exporting:
            topic = self._export_topics.get(rec["tenant_id"]) or self._export_topic(rec["tenant_id"])
            if topic is not None:
                out.append((topic, key, value))
                self.export_stats["exported"] += 1
            else:
                self.export_stats["export_skipped"] += 1

    def _export_topic(self, tenant: str) -> str | None:
        """The tenant's export topic, created first if missing (once per tenant and process, and again after
        ``forget_export_topics``). A passing failure (Kafka not answering) raises: the batch is read again from
        its committed offsets, nothing is lost. A refusal that retrying cannot mend (a policy, authorization)
        skips the tenant's copies for ``EXPORT_REFUSED_S`` and is logged, so one tenant's topic never holds up
        every other tenant's readings; its readings still reach ``fleetstream.telemetry``."""
        refused_at = self._export_refused.get(tenant)
        if refused_at is not None and time.monotonic() - refused_at < EXPORT_REFUSED_S:
            return None
        if self.ensure_export is not None:
            try:
                self.ensure_export(tenant)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.retriable() or err.code() in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
                                                     KafkaError.REQUEST_TIMED_OUT):
                    raise
                log.error("tenant %s: Kafka refused to create its export topic (%s); its readings are not "
                          "exported for %ss", tenant, err, EXPORT_REFUSED_S)
                self._export_refused[tenant] = time.monotonic()
                return None
        self._export_refused.pop(tenant, None)
        topic = self._export_topics[tenant] = topics.tenant_export_topic(tenant)
        return topic

    def forget_export_topics(self) -> None:
        """After a failed batch: a copy may have failed because its topic was deleted meanwhile, so every export
        topic is made sure of again before the next copy to it (and recreated if it is gone)."""
        self._export_topics.clear()

    def _tail(self, device_type: str | None, tags: list[str]) -> bytes:
        """The encoded ``device_type`` and ``tags``, the schema's last two fields. A record as connectors
        write it ends in their empty encodings (``TELEMETRY_PLAIN_TAIL``); enriching it is swapping that
        tail, per device type and tag set once, instead of encoding the whole record again (~15 µs per
        reading)."""
        k = (device_type, tuple(tags))
        tail = self._tails.get(k)
        if tail is None:
            tail = telemetry_tail(device_type, tags)
            if len(self._tails) < 10_000:
                self._tails[k] = tail
        return tail

    def _bundles(self, validated: list[tuple[bytes, bytes, dict]]) -> list[Output]:
        n, by_partition = self.partitions, {}
        for item in validated:
            by_partition.setdefault(partition_for(item[0], n), []).append(item)
        return [(self.bundle_topic, None, bundles.pack(items[i:i + bundles.MAX_READINGS]), p)
                for p, items in by_partition.items() for i in range(0, len(items), bundles.MAX_READINGS)]


def register(app: faust.App, s: Settings, registry: RegistryView) -> BatchPipe:
    """Hosts validate in the streams worker as a librdkafka batch loop on its own thread (adr/0057), started
    and stopped with the Faust app. It follows on from where the Faust agent of the same name stopped."""
    bundle_topic = bundles.topic_name(app.conf.id)
    admin = None

    def ensure_export(tenant: str) -> None:
        nonlocal admin
        if admin is None:
            admin = s.kafka.admin(client_id=f"{app.conf.id}-validate-export")
        ensure_tenant_export_topic(s.kafka, admin, tenant, s.kafka_partitions)

    validator = Validator(s, registry, bundle_topic, bundles.ensure_topic(
        s.kafka, bundle_topic, topics.TELEMETRY.name), ensure_export=ensure_export)
    pipe = BatchPipe(s.kafka, topics.TELEMETRY_RAW.name, f"{app.conf.id}-validate", validator.process,
                     batch=BATCH, linger_s=LINGER_S, legacy_group=app.conf.id, before_start=validator.wait_for_registry,
                     on_failure=validator.forget_export_topics, name="validate")

    @app.service
    class ValidateService(mode.Service):
        async def on_start(self) -> None:
            pipe.start()

        async def on_stop(self) -> None:
            await asyncio.to_thread(pipe.stop)

    @app.page("/validate/stats/")
    async def stats(web, request):
        """Counters, and the stage's own delay (oldest record of a batch → its commit) since the last call."""
        lags, slowest = sorted(pipe.lags_ms), pipe.slowest
        pipe.lags_ms.clear()
        pipe.slowest = {}
        pct = {f"batch_lag_p{q}_ms": lags[min(len(lags) - 1, len(lags) * q // 100)] for q in (50, 99)} if lags else {}
        return web.json({**pipe.stats, **validator.export_stats, **pct, "batches_since_last": len(lags),
                         "slowest_batch": slowest})

    return pipe


def _dead(rec: dict | None, code: str, reason: str, raw: bytes, now: int) -> dict:
    return {"tenant_id": rec["tenant_id"] if rec else None, "device_id": rec["device_id"] if rec else None,
            "source": "streams.validate", "reason_code": code, "reason": reason, "origin": topics.TELEMETRY_RAW.name,
            "time": now, "raw": raw}
