"""``fleetstream connector run coap [--config connector.yaml]`` / ``python -m connectors.coap``."""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.settings import Settings

from ..errors import ConfigError
from ..process import run_site
from .config import CoapConfig
from .connector import CoapConnector
from .settings import load_coap_config


def run(s: Settings, config: Path | None) -> int:
    try:
        cfg = load_coap_config(config) if config else CoapConfig()
        if cfg.port is None:  # the port devices are told about (GET /v1/devices/{id}/connection)
            cfg = cfg.model_copy(update={"port": s.coap_port})
    except ConfigError as exc:
        print(f"invalid connector file {config}:\n{exc}", file=sys.stderr)
        return 2
    return run_site(s, cfg, "coap", lambda uplink, admission: CoapConnector(
        uplink, cfg, admission, max_skew_ms=s.max_clock_skew_s * 1000))


if __name__ == "__main__":
    import logging

    from runtime.settings import load

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    raise SystemExit(run(load(), Path(sys.argv[1]) if len(sys.argv) > 1 else None))
