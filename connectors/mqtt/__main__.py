"""``fleetstream connector run mqtt`` / ``python -m connectors.mqtt``: wiring from settings."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from fleetstream.settings import Settings
from fleetstream.stack.pki import PlatformPKI

from ..uplink import UplinkPublisher
from .connector import MqttConnector, MqttSettings

log = logging.getLogger(__name__)


def run(s: Settings, config: Path | None = None) -> int:
    pki = PlatformPKI(s.pki_dir)
    cert, key = pki.service_files("fleetstream-connector")
    ms = MqttSettings(host=s.mqtt_broker_host, port=s.mqtt_tls_port, ca_file=str(pki.ca_cert), cert_file=cert,
                      key_file=key, max_skew_ms=s.max_clock_skew_s * 1000)
    uplink = UplinkPublisher(s.bootstrap_servers, "mqtt")
    conn = MqttConnector(uplink, ms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    conn.start()
    if not conn.wait_connected(15):
        log.error("could not connect to the broker at %s:%s", ms.host, ms.port)
    stop.wait()
    conn.stop()
    uplink.close()
    return 0


if __name__ == "__main__":
    from fleetstream.settings import load

    raise SystemExit(run(load()))
