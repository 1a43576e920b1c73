"""Runs one site connector process: uplink, registry view, admission, the connector, command delivery.

Used by ``connectors/<proto>/__main__.py`` (``fleetstream connector run KIND --config FILE``); SIGTERM
and SIGINT stop it cleanly: input stops first, then everything accepted is flushed to Kafka."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from runtime.settings import Settings

from .base import Admission, BaseConnector
from .commands import CommandRouter
from .ratelimit import TokenBuckets
from .registry import DeviceRegistry
from .siteconfig import SiteConfigBase
from .uplink import UplinkPublisher

log = logging.getLogger(__name__)

Build = Callable[[UplinkPublisher, Admission], BaseConnector]


def admission_for(site: SiteConfigBase | Any, registry: DeviceRegistry, *, require_registered: bool = True) -> Admission:
    return Admission(registry, TokenBuckets(site.rate_limit.per_second, site.rate_limit.burst),
                     require_registered=require_registered)


def run_site(s: Settings, site: SiteConfigBase | Any, source: str, build: Build, *, commands: bool = True) -> int:
    return asyncio.run(_run(s, site, source, build, commands))


async def _run(s: Settings, site: SiteConfigBase | Any, source: str, build: Build, commands: bool) -> int:
    uplink = UplinkPublisher(s.kafka, source)
    registry = DeviceRegistry(s.kafka, f"{source}-{site.site_id}").start()
    if not await asyncio.to_thread(registry.wait_ready, 60):
        log.warning("registry not caught up after 60 s; unknown devices are refused until it is")
    conn = build(uplink, admission_for(site, registry))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await conn.start()
    router = CommandRouter(s.kafka, conn, loop, f"fleetstream-{source}-{site.site_id}").start() \
        if commands else None
    log.info("%s connector %s (tenant %s) running", source, site.site_id, getattr(site, "tenant_id", "any"))
    try:
        await stop.wait()
    finally:
        if router is not None:
            await asyncio.to_thread(router.stop)
        await conn.stop()
        registry.stop()
        await asyncio.to_thread(uplink.close)
    return 0
