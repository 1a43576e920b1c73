"""The query bench's open loop (adr/0193): requests go out on the offered schedule whatever the server does,
and a slow answer delays no later request's start but counts as latency from its scheduled time. A real
aiohttp server on a test port; checks counts and ordering, never this machine's speed."""

from __future__ import annotations

import asyncio

from aiohttp import web

from fleetstream.bench.queries import Scenario, _drive
from tests.conftest import PORT_OFFSET

PORT = 28070 + PORT_OFFSET  # beside the gateway's test port (28080 + offset), below 32768


async def _serve(handler) -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/page", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    return runner


def test_the_open_loop_keeps_its_schedule_and_counts_waiting_as_latency():
    async def main():
        arrivals: list[float] = []

        async def slow(request):  # every answer takes 300 ms: a closed loop of 2 clients would send ~6/s
            arrivals.append(asyncio.get_running_loop().time())
            await asyncio.sleep(0.3)
            return web.Response(body=b"x" * 100)

        runner = await _serve(slow)
        try:
            sc = Scenario("page", ["/page"], 50)
            res = await _drive(f"http://127.0.0.1:{PORT}", "t", sc, clients=20, warmup_s=0.5, duration_s=2.0,
                               rate=20.0)
            return res, arrivals
        finally:
            await runner.cleanup()

    res, arrivals = asyncio.run(main())
    assert res["errors"] == 0
    # 20/s offered for 2 s after the warm-up, 20 clients in flight are enough for 300 ms answers: all served
    assert 38 <= res["ok"] <= 40, res  # the requests due in the 2 measured seconds, all of them
    assert len(arrivals) >= 48  # warm-up included: the server saw the schedule
    assert res["latency_ms"]["p50"] >= 300  # latency includes the answer's 300 ms


def test_with_too_few_clients_the_wait_for_a_free_one_is_latency():
    async def main():
        async def slow(request):
            await asyncio.sleep(0.2)
            return web.Response(body=b"x" * 100)

        runner = await _serve(slow)
        try:
            # 10/s offered, one client answering 5/s: requests fall behind their schedule, and every due
            # request is still sent (the run takes longer than its duration)
            return await _drive(f"http://127.0.0.1:{PORT}", "t", Scenario("page", ["/page"], 50), clients=1,
                                warmup_s=0.0, duration_s=1.0, rate=10.0)
        finally:
            await runner.cleanup()

    res = asyncio.run(main())
    assert res["ok"] == 10
    # the last request started ~1 s after it was due: the closed loop would report ~200 ms throughout
    assert res["latency_ms"]["max"] >= 700, res
