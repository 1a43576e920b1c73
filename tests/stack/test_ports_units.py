"""A stack refuses to start on ports another process holds, naming port, component and holder in one line,
before it starts anything (the 188 errors of a CI run on ports a killed run's stack still held)."""

from __future__ import annotations

import os
import socket

import pytest

from fleetstream.stack import ports
from fleetstream.stack.process import StartupError
from fleetstream.stack.supervisor import Stack
from runtime.settings import Settings


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def settings(tmp_path) -> Settings:
    pg, mq, kf, ctl, sr = free_ports(5)
    return Settings(data_dir=tmp_path / "data", streams_web_token="x", host="127.0.0.1", postgres_port=pg,
                    mqtt_tls_port=mq, kafka_port=kf, kafka_controller_port=ctl, schema_registry_port=sr)


def test_a_held_port_is_named_with_its_holder_before_anything_starts(tmp_path):
    s = settings(tmp_path)
    stack = Stack(s)
    with socket.socket() as held:
        held.bind(("127.0.0.1", s.mqtt_tls_port))
        held.listen()
        with pytest.raises(StartupError) as raised:
            stack.start_infra()
    text = str(raised.value)
    assert f"{s.mqtt_tls_port} (mosquitto)" in text and f"pid {os.getpid()}" in text
    assert str(s.postgres_port) not in text  # only what is held
    assert stack.children == []


def test_free_ports_pass_and_a_closed_listeners_port_is_free_again(tmp_path):
    s = settings(tmp_path)
    with socket.socket() as held:
        held.bind(("127.0.0.1", s.kafka_port))
        held.listen()
        assert ports.in_use("127.0.0.1", s.kafka_port)
    assert not ports.in_use("127.0.0.1", s.kafka_port)
    ports.ensure_free("127.0.0.1", ports.infra_ports(s))
    assert set(ports.infra_ports(s)) == {s.postgres_port, s.mqtt_tls_port, s.kafka_port, s.kafka_controller_port,
                                         s.schema_registry_port}
