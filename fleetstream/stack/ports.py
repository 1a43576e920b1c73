"""The ports a local stack is about to listen on, checked before anything starts. A port another process holds
(most often a stack left running by a run killed by hand) is named in one line with its holder, instead of a
component that dies while starting — or a readiness check answered by the other stack's process."""

from __future__ import annotations

import errno
import socket

import psutil

from runtime.settings import Settings

from . import kafka
from .process import StartupError


def infra_ports(s: Settings) -> dict[int, str]:
    """Port → what of ``start_infra`` listens on it."""
    ports = {s.postgres_port: "postgres", s.mqtt_tls_port: "mosquitto"}
    if s.kafka_brokers < 2:
        ports |= {s.kafka_port: "kafka", s.kafka_controller_port: "kafka controller"}
    else:
        for i in range(s.kafka_brokers):
            ports |= {p: f"kafka-{i}" for p in kafka.node_ports(s, i)}
    if not s.schema_registry_url:
        ports[s.schema_registry_port] = "schema registry"
    return ports


def in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed stack's TIME_WAIT is no holder
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def holder(port: int) -> str:
    """``pid N: command line`` of the process listening on ``port``, if this user may see it."""
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                cmd = " ".join(psutil.Process(conn.pid).cmdline())
                return f"pid {conn.pid}: {cmd[:160]}"
    except (psutil.Error, OSError):
        pass
    return "a process this user cannot see"


def ensure_free(host: str, ports: dict[int, str]) -> None:
    """Raises ``StartupError`` naming every port of ``ports`` already in use on ``host`` and who holds it."""
    taken = [f"{port} ({what}) is held by {holder(port)}" for port, what in sorted(ports.items())
             if in_use(host, port)]
    if taken:
        raise StartupError("cannot start the stack, its ports are in use — another stack still running? "
                           "(`fleetstream down`, or stop that process): " + "; ".join(taken))
