"""The live hub while nobody watches (adr/0200): it holds no partitions, so it sends the broker no fetches; a
subscriber that arrives then is answered once the hub reads again, and a record produced after that answer
reaches it — five times over, each after the hub went idle again."""

from __future__ import annotations

import asyncio
import time
import uuid

from confluent_kafka import Producer

from gateway.live.hub import LiveHub, Subscriber
from schemas import codec, topics


async def _until(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _telemetry(tenant: str, device: str, i: int) -> bytes:
    now = int(time.time() * 1000)
    return codec("telemetry").encode({"tenant_id": tenant, "device_id": device, "event_time": now,
                                      "receive_time": now, "protocol": "mqtt", "values": {"n": float(i)}})


def test_an_idle_hub_holds_no_partitions_and_a_subscriber_after_it_misses_nothing(stack, settings):
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})

    async def run():
        hub = LiveHub(settings.kafka, idle_after_s=0.0)
        await hub.start()
        try:
            await _until(hub.ready.is_set)
            assert hub.stats["partitions"] == 0  # nobody subscribed: the hub reads nothing
            for i in range(5):
                tenant = f"idle-{uuid.uuid4().hex[:8]}"
                sub = hub.subscribe(Subscriber(tenant, lambda ev: True, maxsize=100))
                assert await hub.live()
                assert hub.stats["partitions"] > 0
                # produced right after the answer, to every partition: none may fall before the hub's position
                every = range(settings.kafka_partitions)
                for p in every:
                    producer.produce(topics.TELEMETRY.name, _telemetry(tenant, f"d{p}", i), partition=p)
                producer.flush(10)
                got: list = []
                deadline = time.monotonic() + 30
                while len(got) < len(every) and time.monotonic() < deadline:
                    got += await sub.next_batch(1)
                assert sorted(ev.device_id for ev in got) == [f"d{p}" for p in every]
                assert {ev.record["values"]["n"] for ev in got} == {float(i)}
                hub.unsubscribe(sub)
                await _until(lambda: hub.stats["partitions"] == 0)  # idle again: no fetches
        finally:
            await hub.stop()

    asyncio.run(run())
