"""Liveness tells the supervisor (and Kubernetes) when the gateway cannot do its work any more: a worker
thread of one of its components has died, e.g. a sink whose consumer loop ended (adr/0111)."""

from __future__ import annotations

import json
import threading

from gateway.api.routes.health import healthz


def _finished(name: str) -> threading.Thread:
    t = threading.Thread(target=lambda: None, name=name)
    t.start()
    t.join()
    return t


def test_healthz_fails_when_a_component_thread_has_died_and_names_it():
    stop = threading.Event()
    alive = threading.Thread(target=stop.wait, name="sink-fleetstream.telemetry", daemon=True)
    alive.start()
    try:
        assert healthz([[alive], alive]) == {"status": "ok"}
        dead = _finished("sink-fleetstream.alerts")
        r = healthz([[alive, dead], alive])
        assert r.status_code == 503 and json.loads(r.body)["dead_threads"] == ["sink-fleetstream.alerts"]
        # a thread a component keeps as an attribute counts too (the live hub, the state view)
        from gateway.live.hub import LiveHub

        hub = LiveHub("127.0.0.1:1")
        hub._thread = _finished("live-hub")
        assert json.loads(healthz([hub]).body)["dead_threads"] == ["live-hub"]
        # a thread that was never started is not dead (a component not started yet)
        assert healthz([threading.Thread(target=lambda: None)]) == {"status": "ok"}
    finally:
        stop.set()
