"""Health of each component of a running stack, with the addresses users need."""

from __future__ import annotations

import json
import urllib.request

from runtime.pki import PlatformPKI
from runtime.settings import Settings

from . import kafka, mosquitto, postgres, schema_registry
from .process import port_open
from .supervisor import pid_alive, read_state


def _check(fn) -> tuple[str, str | None]:
    try:
        return ("up", None) if fn() else ("down", None)
    except Exception as exc:
        return "down", str(exc).splitlines()[0][:200]


def collect(s: Settings) -> dict:
    state = read_state(s) or {}
    children = state.get("children", {})
    pki = PlatformPKI(s.pki_dir)
    comps: dict[str, dict] = {}

    def add(name, fn, **addr):
        st, err = _check(fn)
        comps[name] = {"state": st, **addr, **({"error": err} if err else {})}

    kafka.cluster_settings(s)
    add("kafka", lambda: port_open(s.host, s.kafka_port) and kafka.kafka_ready(s.kafka, s.kafka_brokers),
        bootstrap=s.bootstrap_servers)
    add("schema-registry", lambda: schema_registry.registry_ready(s), url=s.schema_registry_endpoint)
    add("mosquitto", lambda: port_open(s.host, s.mqtt_tls_port) and mosquitto.mqtt_ready(s, pki),
        mqtt_tls=f"mqtts://{s.public_host}:{s.mqtt_tls_port}", ca_file=str(pki.ca_cert))
    add("postgres", lambda: port_open(s.host, s.postgres_port) and postgres.postgres_ready(s.app_dsn),
        address=f"{s.host}:{s.postgres_port}")

    def gateway_ready():
        with urllib.request.urlopen(f"http://{s.host}:{s.gateway_port}/readyz", timeout=3) as r:
            comps.setdefault("_gateway_checks", json.loads(r.read()))
            return r.status == 200

    add("gateway", gateway_ready, url=s.gateway_url, openapi=f"{s.gateway_url}/docs")
    gw = comps.pop("_gateway_checks", None)
    comps["clickhouse"] = {"state": "up" if gw and gw["checks"].get("clickhouse") == "ok" else "down",
                           "dsn": s.chdb_dsn, "served_by": "gateway (embedded chdb)" if s.clickhouse_embedded else "server"}
    if gw and "sink" in gw["checks"]:
        comps["sink"] = {"state": "up" if gw["checks"]["sink"] == "ok" else gw["checks"]["sink"],
                         "stats": gw["checks"].get("sink_stats", {})}
    add("streams", lambda: port_open(s.host, s.streams_web_port) and pid_alive(children.get("streams")),
        web=f"http://{s.host}:{s.streams_web_port}")
    comps["connector-mqtt"] = {"state": "up" if pid_alive(children.get("connector-mqtt")) else "down"}
    if "connector-coap" in children:
        comps["connector-coap"] = {"state": "up" if pid_alive(children.get("connector-coap")) else "down",
                                   "url": f"coap://{s.public_host}:{s.coap_port} (UDP)"}
    for name, pid in children.items():
        if name.startswith(("simulator", "site-")) or "." in name:  # "gateway.1": a further replica (adr/0134)
            comps[name] = {"state": "up" if pid_alive(pid) else "down"}
    return {"running": bool(state) and pid_alive(state.get("supervisor_pid")), "data_dir": str(s.root),
            "components": comps}
