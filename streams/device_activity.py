"""Device-activity agent: the one consumer of ``fleetstream.telemetry`` and ``fleetstream.device-events``
in the streams worker; it hands each batch to the handlers that need it (adr/0050).

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
from collections.abc import Awaitable, Callable, Sequence

import faust

from schemas import topics

BATCH = 5000
WITHIN_S = 0.05

Handler = Callable[[Sequence[faust.EventT]], Awaitable[None]]


def register(app: faust.App, *, on_both: Handler, on_telemetry: Handler, on_device_events: Handler,
             ready: Callable[[], bool] | None = None) -> None:
    source = app.topic(topics.TELEMETRY.name, topics.DEVICE_EVENTS.name, key_type=bytes, value_type=bytes)

    @app.agent(source, name="device-activity")
    async def device_activity(stream):
        if ready is not None:
            await asyncio.to_thread(ready)
        async for events in stream.take_events(BATCH, within=WITHIN_S):
            await on_both(events)
            telemetry = [e for e in events if e.message.topic == topics.TELEMETRY.name]
            if telemetry:
                await on_telemetry(telemetry)
            if len(telemetry) < len(events):
                await on_device_events([e for e in events if e.message.topic != topics.TELEMETRY.name])
