"""The infrastructure's start-up chains run side by side (adr/0199): the first that fails is what
`start_infra` raises, and it ends the waits of the others instead of leaving them to their timeouts. The
chains here are stand-ins (a real child process that never becomes ready, a failing step): no component starts."""

from __future__ import annotations

import sys

import pytest

from fleetstream.stack.process import Child, StartupCancelled, StartupError
from fleetstream.stack.supervisor import Stack
from tests.stack.test_ports_units import settings


@pytest.mark.timeout(120)  # without the cancellation the stand-ins would wait 600 s
def test_the_failing_chain_is_raised_and_the_others_stop_waiting(tmp_path):
    stack = Stack(settings(tmp_path))  # ports nobody holds: the port check runs first (fleetstream/stack/ports.py)
    waited: list[BaseException] = []

    def never_ready(name):
        def chain():
            child = stack._spawn(Child(name, [sys.executable, "-c", "import time; time.sleep(600)"],
                                       tmp_path / f"{name}.log"))
            try:
                stack._wait(child, lambda: False, 600, "never")  # only the failure elsewhere ends this
            except BaseException as exc:
                waited.append(exc)
                raise
        return chain

    def fails():
        raise StartupError("postgres: initdb failed")

    stack._start_registry, stack._start_kafka = never_ready("registry"), never_ready("kafka")
    stack._start_postgres, stack._start_mosquitto = fails, never_ready("mosquitto")
    try:
        with pytest.raises(StartupError, match="initdb failed") as raised:
            stack.start_infra()
        assert not isinstance(raised.value, StartupCancelled)
        assert len(waited) == 3 and all(isinstance(e, StartupCancelled) for e in waited)
        assert {c.name for c in stack.children} == {"registry", "kafka", "mosquitto"}
    finally:
        children = list(stack.children)
        stack.stop(hard=True)
    assert children and not any(c.alive() for c in children)
