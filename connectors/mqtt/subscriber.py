"""A small asyncio MQTT 5 subscriber for the connector's uplink: whole bursts of PUBLISH packets in, one
write of PUBACKs out once Kafka confirmed them (adr/0045).

paho decodes every PUBLISH's MQTT 5 ``Properties`` into an object, builds an ``MQTTMessage`` and calls
back once per message, and each manual ``ack`` is its own TLS write; that was most of the connector's
225 µs per message. This client hands the connector every PUBLISH of one TLS read as one list, skips the
properties (none are used), and sends the acknowledgements of a confirmed batch in one write.

What it keeps from the paho set-up (adr/0042): a stable client id, ``clean_start=False`` with a session
expiry (unacknowledged messages wait in the session for the same client id), ``Receive Maximum`` as the
in-flight window, the shared subscription, mTLS, keep-alive pings and reconnecting with backoff.
Acknowledgements are tied to the connection they came in on: one confirmed after a reconnect is dropped,
because the broker redelivers that message in the resumed session anyway (at-least-once). A broker resends
unacknowledged messages only when the session resumes, never on the same connection, so a batch Kafka
refused asks for a reconnect (``redeliver``) rather than waiting in the window for good (adr/0103).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable

from . import packets as p

log = logging.getLogger(__name__)

# (topic, qos, packet id, payload, dup) of every PUBLISH in one read, and the connection generation
OnBatch = Callable[[int, list[tuple[str, int, int, bytes, bool]]], None]
# (session present, monotonic time the previous connection ended or None on the first one)
OnConnected = Callable[[bool, float | None], None]


class _Conn(asyncio.Protocol):
    def __init__(self, owner: MqttSubscriber, generation: int):
        self.owner, self.generation = owner, generation
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.last_rx = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        buf = self.buf
        buf += data
        try:
            packets, used = p.split(buf)
        except p.MqttProtocolError as exc:
            log.error("broker sent a malformed packet: %s", exc)
            self.transport.close()
            return
        del buf[:used]
        batch = []
        for kind, flags, body in packets:
            if kind == p.PUBLISH:
                try:
                    batch.append(p.parse_publish(flags, body))
                except p.MqttProtocolError as exc:  # §4.13: close on a malformed packet; unacked ones return
                    log.error("broker sent a malformed PUBLISH: %s", exc)
                    self.transport.close()
                    return
            elif kind == p.CONNACK and not self.connack.done():
                self.connack.set_result((body[0] & 1, p.reason_of(body, 1)))
            elif kind == p.SUBACK and not self.suback.done():
                plen = body[2]  # property length < 128 for anything Mosquitto sends here
                self.suback.set_result(list(body[3 + plen:]))
            elif kind == p.DISCONNECT:
                log.warning("broker disconnected the connector: reason 0x%02x", p.reason_of(body, 0))
        if batch:
            try:
                self.owner.on_batch(self.generation, batch)
            except Exception:  # a bug must not drop the connection: that would redeliver the same burst forever
                log.exception("handling %d messages failed; they stay unacknowledged until a reconnect", len(batch))

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class MqttSubscriber:
    """:param ssl_context: client context with the connector's certificate (mTLS); may be set before ``start``.
    :param filters: topic filters subscribed at QoS 1 (a shared subscription: ``$share/<group>/...``).
    :param on_batch: called on the event loop with each read's PUBLISH packets; acknowledge them with
        ``ack(generation, packet_ids)`` from any thread once they are safe."""

    def __init__(self, host: str, port: int, client_id: str, ssl_context: ssl.SSLContext | None, filters: list[str],
                 on_batch: OnBatch, *, session_expiry_s: int = 3600, receive_maximum: int = 1000,
                 keepalive: int = 30, on_connected: OnConnected | None = None):
        self.host, self.port, self.client_id, self.ssl = host, port, client_id, ssl_context
        self.filters, self.on_batch, self.on_connected = filters, on_batch, on_connected
        self.session_expiry_s, self.receive_maximum, self.keepalive = session_expiry_s, receive_maximum, keepalive
        self.connected = threading.Event()
        self.generation = 0
        self._conn: _Conn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._acks: list[tuple[int, list[int]]] = []
        self._acks_lock = threading.Lock()
        self._acks_scheduled = False
        self._down_since: float | None = None  # when the last connection ended (monotonic)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"mqtt-{self.client_id}")

    # -- acknowledgements ---------------------------------------------------------------------------
    def ack(self, generation: int, packet_ids: list[int]) -> None:
        """Thread-safe: PUBACKs for ``packet_ids`` received on connection ``generation``. Batches confirmed
        while the loop is busy go out together: one wake-up of the loop and one TLS write."""
        if not packet_ids:
            return
        with self._acks_lock:
            self._acks.append((generation, packet_ids))
            if self._acks_scheduled:
                return
            self._acks_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._send_acks)
        except RuntimeError:  # the loop has closed (process exit): the session redelivers these messages
            pass

    def _send_acks(self) -> None:
        with self._acks_lock:
            pending, self._acks, self._acks_scheduled = self._acks, [], False
        conn = self._conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return  # that connection is gone; the resumed session redelivers these messages
        gen = conn.generation
        ids = [pid for g, pids in pending if g == gen for pid in pids]
        if ids:
            conn.transport.write(p.pubacks(ids))

    def redeliver(self, generation: int) -> None:
        """Thread-safe: messages of connection ``generation`` will never be acknowledged (Kafka refused them).
        Drops that connection if it is still the current one: the resumed session sends them again (DUP)."""
        def drop() -> None:
            conn = self._conn
            if conn is not None and conn.generation == generation and conn.transport is not None \
                    and not conn.transport.is_closing():
                log.warning("reconnecting so the broker redelivers the messages Kafka did not take")
                conn.transport.close()
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(drop)
        except RuntimeError:  # the loop has closed: the next process resumes the session
            pass

    def pause(self) -> None:
        """Stop reading (shutdown: no new messages while the last ones are confirmed and acknowledged)."""
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.pause_reading()

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.sleep(0)  # let acknowledgements already scheduled from other threads go out first
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(p.DISCONNECT_PACKET)
            conn.transport.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.connected.clear()

    # -- connection ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                await self._session()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except (OSError, ssl.SSLError, TimeoutError, p.MqttProtocolError) as exc:
                log.warning("mqtt connection to %s:%s failed: %s", self.host, self.port, exc)
            self.connected.clear()
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self.generation += 1
        gen = self.generation
        _, conn = await asyncio.wait_for(loop.create_connection(
            lambda: _Conn(self, gen), self.host, self.port, ssl=self.ssl,
            server_hostname=self.host if self.ssl is not None else None), 15)
        self._conn = conn
        try:
            conn.transport.write(p.connect(self.client_id, keepalive=self.keepalive, clean_start=False,
                                           session_expiry_s=self.session_expiry_s,
                                           receive_maximum=self.receive_maximum))
            session_present, reason = await asyncio.wait_for(asyncio.shield(conn.connack), 15)
            if reason >= 0x80:
                raise p.MqttProtocolError(f"broker refused the connection: reason 0x{reason:02x}")
            conn.transport.write(p.subscribe(1, [(f, 1) for f in self.filters]))
            granted = await asyncio.wait_for(asyncio.shield(conn.suback), 15)
            if any(g >= 0x80 for g in granted):
                raise p.MqttProtocolError(f"subscription refused: {granted}")
            self.connected.set()
            log.info("connected to %s:%s as %s, subscribed %s (session present: %s)", self.host, self.port,
                     self.client_id, self.filters, bool(session_present))
            if self.on_connected:
                self.on_connected(bool(session_present), self._down_since)
            await self._keepalive(conn)
        finally:
            if self.connected.is_set():
                self._down_since = time.monotonic()
            self.connected.clear()
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.close()

    async def _keepalive(self, conn: _Conn) -> None:
        """Pings every keepalive/2 s; a broker silent for 1.5 × keepalive is presumed gone (§3.1.2.10)."""
        while not conn.closed.done():
            done, _ = await asyncio.wait([conn.closed], timeout=self.keepalive / 2)
            if done:
                break
            if time.monotonic() - conn.last_rx > self.keepalive * 1.5:
                log.warning("broker silent for %.0f s: reconnecting", time.monotonic() - conn.last_rx)
                conn.transport.close()
                break
            conn.transport.write(p.PINGREQ_PACKET)
        exc = conn.closed.result() if conn.closed.done() else None
        if not self._stopping:
            log.warning("disconnected from broker: %s", exc or "connection closed")
