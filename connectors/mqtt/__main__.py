"""``fleetstream connector run mqtt [--config connector.yaml]`` / ``python -m connectors.mqtt``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from runtime.pki import PlatformPKI
from runtime.settings import Settings

from ..commands import CommandRouter
from ..errors import ConfigError
from ..process import admission_for
from ..registry import DeviceRegistry
from ..uplink import UplinkPublisher
from .connector import MqttConnector
from .downlink import MqttDownlink
from .settings import MqttFileConfig, MqttSettings, load_mqtt_file

log = logging.getLogger(__name__)

# One group for every MQTT instance, so each command is published once; the name the downlink's command
# consumer had, so its committed offsets carry over (adr/0122).
COMMANDS_GROUP = "fleetstream-downlink-mqtt"


def run(s: Settings, config: Path | None = None) -> int:
    try:
        file = load_mqtt_file(config) if config else MqttFileConfig()
    except ConfigError as exc:
        print(f"invalid connector file {config}:\n{exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(s, file))


async def _run(s: Settings, file: MqttFileConfig) -> int:
    pki = PlatformPKI(s.pki_dir)
    cert, key = pki.service_files("fleetstream-connector")
    overrides = {k: v for k, v in file.model_dump(include={"client_id", "share_group", "session_expiry_s",
                                                             "receive_maximum", "sparkplug_host_id",
                                                             "sparkplug_max_devices"}).items() if v is not None}
    ms = MqttSettings(host=s.mqtt_broker_host, port=s.mqtt_tls_port, ca_file=str(pki.ca_cert), cert_file=cert,
                      key_file=key, max_skew_ms=s.max_clock_skew_s * 1000,
                      state_dir=str(s.root / "connectors"), **overrides)
    uplink = UplinkPublisher(s.kafka, "mqtt", instance=ms.client_id)
    registry = DeviceRegistry(s.kafka, f"mqtt-{ms.client_id}").start()
    conn = MqttConnector(uplink, ms, admission_for(file, registry, require_registered=False),
                         downlink=MqttDownlink(s.kafka, ms))  # shadows and device answers (adr/0052)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await conn.start()
    router = CommandRouter(s.kafka, conn, loop, COMMANDS_GROUP).start()
    if not await asyncio.to_thread(conn.wait_connected, 15):
        log.error("could not connect to the broker at %s:%s", ms.host, ms.port)
    try:
        await stop.wait()
    finally:
        await asyncio.to_thread(router.stop)
        await conn.stop()
        registry.stop()
        await asyncio.to_thread(uplink.close)
    return 0


if __name__ == "__main__":
    from runtime.settings import load

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    raise SystemExit(run(load(), Path(sys.argv[1]) if len(sys.argv) > 1 else None))
