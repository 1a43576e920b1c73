"""A graceful stop (`fleetstream down`, Ctrl-C; adr/0177): the platform's processes first, side by side, then the
infrastructure side by side, Kafka's nodes one after another, newest first. The children are stand-ins (real
processes): each records its SIGTERM and exits only once the children it must be stopped beside have theirs,
so a stop one child after another would leave them waiting until the SIGKILL 15 s later (no "exit" line)."""

from __future__ import annotations

import sys
import time

import pytest

from fleetstream.stack.process import Child
from fleetstream.stack.supervisor import Stack
from runtime.settings import Settings

STAND_IN = """
import pathlib, signal, sys, time
name, log, beside = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
def note(what):
    with log.open("a") as f:
        f.write(f"{what} {name}\\n")
def term(*_):
    note("term")
    while not all(f"term {other}" in log.read_text().split("\\n") for other in beside):
        time.sleep(0.05)
    note("exit")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
note("ready")
while True:
    time.sleep(1)
"""


@pytest.mark.timeout(120)
def test_platform_first_side_by_side_then_the_infrastructure_kafka_nodes_in_turn(tmp_path):
    stack = Stack(Settings(data_dir=tmp_path / "data", streams_web_token="x"))
    log = tmp_path / "stop.log"
    log.touch()
    beside = {"kafka-1": [], "kafka-2": ["postgres"], "postgres": ["kafka-2"],
              "gateway": ["streams"], "streams": ["gateway"]}
    for name in ("kafka-1", "kafka-2", "postgres", "gateway", "streams"):
        stack._spawn(Child(name, [sys.executable, "-c", STAND_IN, name, str(log), *beside[name]],
                           tmp_path / f"{name}.log"), infra=name not in ("gateway", "streams"))
    deadline = time.monotonic() + 60
    while log.read_text().count("ready ") < len(beside):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    children = list(stack.children)
    stack.stop()
    lines = log.read_text().split("\n")
    assert not any(c.alive() for c in children)
    assert {f"exit {name}" for name in beside} <= set(lines), lines  # none needed the SIGKILL
    at = {line: i for i, line in enumerate(lines)}
    assert max(at["exit gateway"], at["exit streams"]) < min(at["term postgres"], at["term kafka-2"]), lines
    assert at["exit kafka-2"] < at["term kafka-1"], lines  # newest node first, the next after it
