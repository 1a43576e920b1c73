"""Device-activity agent: the one consumer of validated readings (as bundles, adr/0057) and of
``fleetstream.device-events`` in the streams worker; it hands each batch to the handlers that need it
(adr/0050).

Why one agent: with two Faust agents on one topic, a burst that fills one agent's stream buffer (Faust's
flow control pauses the shared partitions) stalled both agents in this Faust version under load (seen
with 20k readings through the bench). One agent per input topic avoids the shared-buffer path, and
the handlers still live in the modules named after what they handle:

- ``status.py``: both topics (connection events and activity → ONLINE/OFFLINE);
- ``rules.py``: telemetry (rule evaluation and actions);
- ``shadows.py``: device events (re-send a pending delta when a device comes online).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import faust

from schemas import topics

from .bundles import Reading, readings, topic_name

log = logging.getLogger(__name__)

BATCH = 5000  # Faust events per take: bundles and device events
WITHIN_S = 0.05

Handler = Callable[[Sequence[Reading]], Awaitable[None]]


def register(app: faust.App, *, on_both: Handler, on_telemetry: Handler, on_device_events: Handler,
             ready: Callable[[], bool] | None = None) -> None:
    """Validated readings arrive in bundles (``bundles.py``, adr/0057), device events one by one; the
    handlers get both as ``Reading`` (topic, partition, key, value), readings with topic
    ``fleetstream.telemetry`` and in the order they were validated."""
    source = app.topic(topic_name(app.conf.id), topics.DEVICE_EVENTS.name, key_type=bytes, value_type=bytes)
    bundle_topic = source.topics[0]

    @app.agent(source, name="device-activity")
    async def device_activity(stream):
        if ready is not None:
            await asyncio.to_thread(ready)
        async for events in stream.take_events(BATCH, within=WITHIN_S):
            # Faust hands over a fetch's records one topic-partition after the other, and bundles and
            # device events arrive in the same fetch (adr/0072): a device's CONNECTED event could follow
            # the bundle validate wrote after it. In the order they were written (stable: a partition's
            # own order stays), each handler sees connection events and readings as they happened.
            events = sorted(events, key=_written_at)
            both: list[Reading] = []
            telemetry: list[Reading] = []
            others: list[Reading] = []
            for ev in events:
                m = ev.message
                if m.topic == bundle_topic:
                    p = m.partition
                    try:
                        mine = readings(m.value, p)
                    except (ValueError, EOFError, TypeError) as exc:
                        log.error("device-activity: skipping unreadable bundle %s[%d]@%d: %s", m.topic, p,
                                  m.offset, exc)
                        continue
                    both += mine
                    telemetry += mine
                else:
                    r = Reading(m.topic, m.partition, m.key, m.value)
                    both.append(r)
                    others.append(r)
            await on_both(both)
            if telemetry:
                await on_telemetry(telemetry)
            if others:
                await on_device_events(others)


def _written_at(ev: faust.EventT) -> float:
    return ev.message.timestamp or 0.0
