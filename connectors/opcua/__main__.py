"""``fleetstream connector run opcua --config site.yaml`` / ``python -m connectors.opcua site.yaml``."""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.settings import Settings

from ..errors import ConfigError
from ..process import run_site
from .connector import OpcUaConnector
from .settings import load_opcua_site


def run(s: Settings, config: Path | None) -> int:
    if config is None:
        print("the OPC-UA connector needs --config SITE.yaml (see connectors/opcua/examples/site.yaml)",
              file=sys.stderr)
        return 2
    try:
        site = load_opcua_site(config)
    except ConfigError as exc:
        print(f"invalid site file {config}:\n{exc}", file=sys.stderr)
        return 2
    return run_site(s, site, "opcua", lambda uplink, admission: OpcUaConnector(
        uplink, site, admission, max_skew_ms=s.max_clock_skew_s * 1000))


if __name__ == "__main__":
    import logging

    from runtime.settings import load

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    raise SystemExit(run(load(), Path(sys.argv[1]) if len(sys.argv) > 1 else None))
