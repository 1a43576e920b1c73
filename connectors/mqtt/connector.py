"""Bridge from the MQTT broker into Kafka, for MQTT 5 and 3.1.1 devices alike (the broker translates).

Several instances split the load through one MQTT 5 shared subscription. Messages arrive in bursts (every
PUBLISH of one TLS read, ``subscriber.py``) and are handled as one batch: parsed, admitted, encoded and
produced, then acknowledged together once Kafka confirmed every record of the batch (adr/0045). A
connector that dies before that leaves them in its broker session, and the broker delivers them again
when an instance with the same client id reconnects (adr/0042: Mosquitto does not hand a dead member's
in-flight messages to the other members of the share group).

Channels: ``telemetry`` (the canonical JSON payload) and ``status`` (``online``/``offline``, plain or
``{"state": …}``; a device sets its Last Will to ``offline`` on this topic), which becomes an ONLINE or
OFFLINE device event. The connector subscribes with Retain Handling 2, so a retained status is not replayed
as a new event when a connector (re)subscribes (Mosquitto 2.0 sends retained messages to shared
subscriptions too, contrary to what adr/0042 assumed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

from connectors import canonical
from connectors.base import Admission, CommandResult, ConnectorHealth, ListeningConnector, UplinkContext
from connectors.uplink import Batch, UplinkPublisher, now_ms
from schemas.namespace import PREFIX, DeviceTopic, parse_topic

from .downlink import MqttDownlink
from .gateway_devices import CHANNELS as GATEWAY_CHANNELS
from .gateway_devices import GatewayDevices
from .settings import MqttSettings, subscription
from .subscriber import MqttSubscriber

log = logging.getLogger(__name__)

__all__ = ["MqttConnector", "MqttSettings"]

STATUS_EVENTS = {"online": "ONLINE", "offline": "OFFLINE", "connected": "ONLINE", "disconnected": "OFFLINE"}
_MAX_TOPICS = 100_000  # parsed-topic cache; cleared when full (a topic is a few hundred bytes)
# A batch Kafka took longer than this to confirm stalled the connector: the broker queued devices' messages
# meanwhile, so the rate limiter credits the time (adr/0104). Well above a healthy confirmation (~5–200 ms).
STALL_S = 1.0
HEARTBEAT_S = 1.0  # how often a connected connector records that it is alive (state_dir/<client id>.alive)


def parse_status(payload: bytes) -> tuple[str, dict[str, str]] | None:
    """(event type, details) of a status payload, or None when it is not one."""
    text = payload.decode("utf-8", "replace").strip()
    details: dict[str, str] = {}
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(doc, dict):
            return None
        text = str(doc.get("state", ""))
        details = {k: str(v)[:200] for k, v in doc.items() if k != "state" and isinstance(v, (str, int, float))}
    event = STATUS_EVENTS.get(text.lower())
    return (event, details) if event else None


def _read_alive(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


class MqttConnector(ListeningConnector):
    """:param settings: broker, identity, shared-subscription group and window.
    :param admission: registry and rate-limit checks (``require_registered`` off: the broker admitted
        the device by its certificate).
    :param downlink: commands and shadow deltas to devices, their answers back; started and stopped with
        the connector. None: the connector delivers no commands."""

    type_name = "mqtt"

    def __init__(self, uplink: UplinkPublisher, settings: MqttSettings, admission: Admission | None = None, *,
                 downlink: MqttDownlink | None = None):
        super().__init__(uplink, admission)
        self.settings = settings
        self.downlink = downlink
        self.stats.update(status_events=0, batches=0)
        filters = [subscription(settings.share_group, f"{PREFIX}/+/+/{ch}") for ch in settings.subscriptions]
        self.subscriber = MqttSubscriber(settings.host, settings.port, settings.client_id, None, filters,
                                         self._on_batch, session_expiry_s=settings.session_expiry_s,
                                         receive_maximum=settings.receive_maximum,
                                         on_connected=self._on_connected)
        self.connected = self.subscriber.connected
        self._topics: dict[str, DeviceTopic | None] = {}
        self._limiter = admission.limiter if admission is not None else None
        self._alive_file = (Path(settings.state_dir) / f"{settings.client_id}.alive") if settings.state_dir \
            else None
        self._last_alive: float | None = None  # wall-clock time the previous process was last connected
        self._heartbeat: asyncio.Task | None = None
        # sub-devices that speak through a gateway's connection (adr/0157)
        self.gateways = GatewayDevices(self, admission.registry if admission is not None else None)
        self.sparkplug = None  # the Sparkplug host application, on the one instance that is it (adr/0155)
        if settings.sparkplug_host_id:
            from .sparkplug.client import SparkplugHostClient
            self.sparkplug = SparkplugHostClient(self, settings.sparkplug_host_id,
                                                 max_devices=settings.sparkplug_max_devices)

    async def start(self) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.settings.ca_file)
        ctx.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        self.subscriber.ssl = ctx
        if self._alive_file is not None:
            self._last_alive = _read_alive(self._alive_file)
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name="mqtt-heartbeat")
        self.subscriber.start()
        if self.downlink is not None:
            self.downlink.start()
        if self.sparkplug is not None:
            self.sparkplug.start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    async def stop(self) -> None:
        # stop taking messages, let Kafka confirm what was taken, acknowledge it, then disconnect: a
        # message confirmed after the DISCONNECT would be delivered again (a duplicate, not a loss)
        if self.downlink is not None:
            await asyncio.to_thread(self.downlink.stop)
        if self.sparkplug is not None:
            await asyncio.to_thread(self.sparkplug.stop)
        self.subscriber.pause()
        await asyncio.to_thread(self.uplink.flush)
        await self.subscriber.stop()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)

    def health(self) -> ConnectorHealth:
        ok = self.connected.is_set()
        return ConnectorHealth(ok, "connected" if ok else "not connected to broker", dict(self.stats))

    # -- commands (adr/0122) ---------------------------------------------------------------------------
    def serves(self, tenant_id: str, device_id: str) -> bool:
        """Any device: the broker routes by topic, and keeps a command for an offline device in its session."""
        return self.downlink is not None

    def ready_to_deliver(self) -> bool:
        return self.downlink is not None and self.downlink.connected.is_set()

    async def deliver_command(self, command: dict[str, Any]) -> CommandResult:
        sp = self.sparkplug  # an edge node or Sparkplug device with a current birth gets NCMD/DCMD
        if sp is not None and sp.serves(command["tenant_id"], command["device_id"]):
            return sp.deliver_command(command)
        if self.downlink is None:
            return await super().deliver_command(command)
        via = self.gateways.gateway_of(command["tenant_id"], command["device_id"])
        if via is not None:  # a sub-device: to its gateway's connection, named inside the message
            return self.gateways.deliver_command(command, self.downlink.client, *via)
        return self.downlink.publish_command(command)

    # -- rate-limit credit for backlogs the platform caused (adr/0104) ----------------------------------
    def _on_connected(self, session_present: bool, down_since: float | None) -> None:
        """Credits the time the connector was away from the broker: the resumed session holds what devices
        sent meanwhile. A process that just started learns how long its predecessor was gone from the
        heartbeat file, else assumes ``away_credit_s``."""
        limiter = self._limiter
        if limiter is None:
            return
        now = limiter.clock()
        if down_since is not None:
            limiter.stalled(down_since, now)
        elif session_present:
            away = self.settings.away_credit_s
            if self._last_alive is not None:
                away = min(max(0.0, time.time() - self._last_alive), float(self.settings.session_expiry_s))
            log.info("resumed session: the %.0f s the connector was away are credited to every device's "
                     "rate limit", away)
            limiter.stalled(now - away, now)

    async def _beat(self) -> None:
        path = self._alive_file
        tmp = path.with_suffix(".tmp")
        while True:
            if self.connected.is_set():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp.write_text(repr(time.time()))
                    os.replace(tmp, path)
                except OSError as exc:
                    log.warning("cannot record the heartbeat in %s: %s", path, exc)
            await asyncio.sleep(HEARTBEAT_S)

    def _topic(self, topic: str) -> DeviceTopic | None:
        if len(self._topics) >= _MAX_TOPICS:
            self._topics.clear()
        where = self._topics[topic] = parse_topic(topic)
        return where

    def _on_batch(self, generation: int, msgs: list[tuple[str, int, int, bytes, bool]]) -> None:
        """Every PUBLISH of one read: records for all of them, then one acknowledgement write once Kafka
        confirmed the lot. A Kafka error leaves the whole batch unacknowledged and asks for a reconnect, so
        the broker redelivers it. Each message gets its verdict on its own: an exception on one is
        dead-lettered as ``internal_error`` and never stops the others (adr/0103)."""
        received = now_ms()
        acks = [pid for _, qos, pid, _, _ in msgs if qos]
        limiter = self._limiter
        started = limiter.clock() if limiter is not None else 0.0

        def confirmed(err: Exception | None) -> None:
            if limiter is not None and (now := limiter.clock()) - started > STALL_S:
                limiter.stalled(started, now)  # devices' messages queued at the broker meanwhile (adr/0104)
            if err is not None:  # no ack: the broker keeps the messages in our session and delivers them again
                log.error("kafka write failed; %d messages left unacknowledged for redelivery: %s", len(acks), err)
                self.subscriber.redeliver(generation)
            else:
                self.subscriber.ack(generation, acks)

        batch = Batch(confirmed, self.type_name)
        self.stats["batches"] += 1
        topics, skew = self._topics, self.settings.max_skew_ms
        for topic, _qos, _pid, payload, dup in msgs:
            try:
                where = topics.get(topic) or self._topic(topic)
                if where is None:  # the broker's ACLs make this a platform misconfiguration, not device input
                    self.uplink.dead_letter(code="bad_topic", reason=f"topic {topic!r} is outside "
                                            "fs/<tenant>/<device>/", raw=payload, origin=topic, done=batch)
                elif where.channel == "status":
                    self.handle_status(where.tenant_id, where.device_id, payload, topic, batch)
                elif where.channel in GATEWAY_CHANNELS:
                    self.gateways.handle(where.tenant_id, where.device_id, where.channel, payload, topic, received,
                                         batch)
                else:
                    readings, rejected = canonical.parse(payload, received, skew)
                    ctx = UplinkContext(where.tenant_id, where.device_id, topic, received)
                    self.publish_uplink(ctx, payload, readings, rejected, batch, redelivered=dup)
            except Exception as exc:
                self._internal_error(topic, payload, exc, batch)
        batch.seal()

    def _internal_error(self, topic: str, payload: bytes, exc: Exception, batch: Batch) -> None:
        """A message the connector failed on (a bug): dead-lettered with the error: answered and kept."""
        log.exception("%s: handling a message on %s failed; dead-lettered as internal_error", self.type_name,
                      topic)
        where = parse_topic(topic)
        try:
            self.uplink.dead_letter(code="internal_error", reason=f"the connector failed on this message: "
                                    f"{type(exc).__name__}: {exc}", raw=payload, origin=topic, done=batch,
                                    tenant_id=where.tenant_id if where else None,
                                    device_id=where.device_id if where else None)
        except Exception as dlq_exc:  # not even a dead letter: the batch stays unacknowledged and comes again
            batch.fail(dlq_exc)

    def handle_telemetry(self, tenant_id: str, device_id: str, payload: bytes, received: int, origin: str,
                         done) -> None:
        readings, rejected = canonical.parse(payload, received, self.settings.max_skew_ms)
        self.publish_uplink(UplinkContext(tenant_id, device_id, origin, received), payload, readings, rejected, done)

    def handle_status(self, tenant_id: str, device_id: str, payload: bytes, origin: str, done) -> None:
        parsed = parse_status(payload)
        if parsed is None:  # (the dead letter's texts are bounded and cleaned by the uplink)
            self.uplink.dead_letter(code="invalid_status", reason="status must be online/offline, plain or "
                                    '{"state": "online"|"offline"}', raw=payload, tenant_id=tenant_id,
                                    device_id=device_id, origin=origin, done=done)
            return
        event, details = parsed
        self.stats["status_events"] += 1
        self.uplink.device_event(tenant_id, device_id, event, reason="device status message",
                                 details={**details, "topic": origin}, done=done)
