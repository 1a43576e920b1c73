"""Batches that sleep while nothing arrives (adr/0201).

faust-streaming's ``Stream.take_events(max_, within)`` waits ``within`` for a full buffer and then loops,
whether or not anything was buffered: every agent taking batches woke its event loop every 50 ms at idle
(device-activity, shadows, commands: 60 wake-ups a second, each through mode's ``wait_first`` with its tasks
and futures). This is faust 0.15.3's ``take_events`` with one change: while the buffer is empty it waits for
the first event without a timeout; from that event on, ``within`` bounds the wait for the rest of the batch
as before, so a batch is yielded at most ``within`` after its first event. Any other faust version keeps its
own ``take_events``.
"""

from __future__ import annotations

import asyncio
from asyncio import CancelledError
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import faust
from faust import streams as faust_streams
from mode import want_seconds
from mode.utils.aiter import aiter
from mode.utils.futures import notify

FAUST_VERSION = "0.15.3"


async def take_events(self, max_: int, within) -> AsyncGenerator[Sequence[Any], None]:
    buffer: list = []
    events: list = []
    buffer_add = buffer.append
    event_add = events.append
    buffer_size = buffer.__len__
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_started = asyncio.Event()  # the one addition: set by the first event of a batch
    timeout = want_seconds(within) if within else None
    stream_enable_acks: bool = self.enable_acks

    buffer_consuming: asyncio.Future | None = None

    channel_it = aiter(self.channel)

    async def add_to_buffer(value):
        try:
            nonlocal buffer_consuming
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            buffer_add(value)
            event = self.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")
            event_add(event)
            buffer_started.set()
            if buffer_size() >= max_:
                buffer_full.set()
                buffer_consumed.clear()
                await self.wait(buffer_consumed)
        except CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            self.log.exception("Error adding to take buffer: %r", exc)
            await self.crash(exc)
        return value

    self.enable_acks = False
    self.add_processor(add_to_buffer)
    self._enable_passive(channel_it)
    try:
        while not self.should_stop:
            if not buffer:  # nothing to hand over: sleep until the first event (or stop), not ``within``
                await self.wait_for_stopped(buffer_started)
            await self.wait_for_stopped(buffer_full, timeout=timeout)
            if buffer:
                buffer_consuming = self.loop.create_future()
                try:
                    yield list(events)
                finally:
                    buffer.clear()
                    for event in events:
                        await self.ack(event)
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_started.clear()
                    buffer_consumed.set()
    finally:
        self.enable_acks = stream_enable_acks
        self._processors.remove(add_to_buffer)


def install() -> bool:
    """Installs ``take_events`` on faust's Stream (True), unless faust is another version than the one it was
    taken from (False: faust's own stays)."""
    if faust.__version__ != FAUST_VERSION:
        return False
    faust_streams.Stream.take_events = faust_streams._tracks_buffer_agen(take_events)
    return True
