"""A second gateway process beside the session's stack, as a load balancer would put two replicas: its own
port, its own embedded ClickHouse path and sink group (chdb allows one process per path), the same
Postgres, Kafka and signing keys."""

from __future__ import annotations

import sys
import urllib.request
import uuid
from contextlib import contextmanager

import httpx

from fleetstream.stack.process import Child
from fleetstream.stack.supervisor import settings_env


@contextmanager
def second_gateway(settings, port_shift: int = 7, env: dict[str, str] | None = None):
    port = settings.gateway_port + port_shift
    tag = uuid.uuid4().hex[:6]
    env = {**settings_env(settings), "FLEETSTREAM_GATEWAY_PORT": str(port),
           "FLEETSTREAM_CLICKHOUSE_DSN": f"chdb://{settings.root / f'clickhouse-replica-{tag}'}",
           "FLEETSTREAM_SINK_GROUP_PREFIX": f"replica-{tag}", **(env or {})}
    child = Child(f"gateway-replica-{tag}", [sys.executable, "-m", "fleetstream.cli", "run", "gateway"],
                  settings.logs_dir / f"gateway-replica-{tag}.log", env=env)
    child.start()
    try:
        url = f"http://{settings.host}:{port}"

        def ready() -> bool:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                return r.status == 200

        child.wait_until(ready, 120, "replica /readyz")
        with httpx.Client(base_url=url, timeout=10) as c:
            yield c
    finally:
        child.stop()
