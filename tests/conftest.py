"""Shared fixtures. The real stack (Kafka, Mosquitto, Postgres, chdb and the platform processes) is started
once per test session by the project's own supervisor, on ports of its own so a `make up` stack can run
beside the tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx
import pytest

from fleetstream.stack.supervisor import Stack
from runtime.settings import Settings
from schemas.codec import bind_local_ids, current_binding, restore_binding
from tests.utils.factories import Factory
from tests.utils.stacks import remove_later

# FLEETSTREAM_TEST_PORT_OFFSET lets several test sessions run side by side on one machine; keep every port
# below 32768 (offset <= ~3000): above it Linux hands ports out as ephemeral source ports. Each pytest-xdist
# worker is a session of its own, with its own stack, WORKER_PORT_STRIDE further up (adr/0194); the variable
# is rewritten so that code reading it directly agrees.
WORKER_PORT_STRIDE = 300
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, … under xdist
if _worker.startswith("gw") and "FLEETSTREAM_TEST_BASE_PORT_OFFSET" not in os.environ:
    os.environ["FLEETSTREAM_TEST_BASE_PORT_OFFSET"] = os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "0")
    os.environ["FLEETSTREAM_TEST_PORT_OFFSET"] = str(
        int(os.environ["FLEETSTREAM_TEST_BASE_PORT_OFFSET"]) + WORKER_PORT_STRIDE * int(_worker[2:]))
PORT_OFFSET = int(os.environ.get("FLEETSTREAM_TEST_PORT_OFFSET", "0"))
# every stack the suite starts (the session's, the tests' own, those of the CLI it runs) is short-lived and light:
# its brokers run the lean JVM and two partitions a topic instead of six, which halves a broker's start-up CPU
# and takes a third off its idle CPU (adr/0211); a test that needs more partitions names them
os.environ.setdefault("FLEETSTREAM_KAFKA_JVM", "lean")
os.environ.setdefault("FLEETSTREAM_KAFKA_PARTITIONS", "2")
TEST_PORTS = {k: v + PORT_OFFSET for k, v in dict(
    kafka_port=29092, kafka_controller_port=29093, mqtt_tls_port=28883, postgres_port=25432,
    gateway_port=28080, schema_registry_port=28081, streams_web_port=28090, metrics_port=28100, coap_port=25783).items()}


def pytest_configure(config):
    # Unit tests encode and decode without a registry; the `infra` fixture binds the registry's ids instead
    # (Stack.start_infra), before anything reads what this process writes (adr/0140).
    bind_local_ids()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with each shared package one scope and the slow scopes first (adr/0195)."""
    from tests.utils.scheduling import scheduler

    return scheduler(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _schema_ids_stay_the_sessions():
    """A test that starts a stack of its own in this process (the benchmark's smoke test) binds that stack's
    registry, which stops with it: put back what was bound before the test (adr/0140)."""
    saved = current_binding()
    yield
    if current_binding() is not saved:
        restore_binding(saved)


def _keeps_data() -> bool:
    """Whether the session's data dir outlives it: one given by FLEETSTREAM_TEST_DATA_DIR, or any with
    FLEETSTREAM_TEST_KEEP_DATA=1."""
    return bool(os.environ.get("FLEETSTREAM_TEST_DATA_DIR")) or os.environ.get("FLEETSTREAM_TEST_KEEP_DATA") == "1"


@pytest.fixture(scope="session")
def settings():
    given = os.environ.get("FLEETSTREAM_TEST_DATA_DIR")
    root = Path(given or tempfile.mkdtemp(prefix="fleetstream-test-"))
    # webhook receivers of the tests listen on 127.0.0.2; every other private address stays refused (adr/0110)
    s = Settings(data_dir=root, **TEST_PORTS, sink_batch_ms=100, webhook_allow="127.0.0.2/32")
    yield s
    # a dir the session made is removed once the stack (a later fixture, torn down first) has stopped; a
    # given one is kept for inspection, as is everything with FLEETSTREAM_TEST_KEEP_DATA=1
    if not _keeps_data():
        s.master_key_path.unlink(missing_ok=True)
        remove_later(root)  # the stack is stopped; its thousands of files go without the worker waiting


@pytest.fixture(scope="session")
def infra(settings):
    """Kafka, Mosquitto, Postgres (migrated) and the Schema Registry; topics created, schema ids bound."""
    stack = Stack(settings)
    try:
        stack.start_infra()
        yield stack
    finally:
        # a throwaway stack (its dir is deleted next) is killed at once: a graceful stop only waits (adr/0195)
        stack.stop(hard=not _keeps_data())


@pytest.fixture(scope="session")
def stack(infra):
    """The whole platform: infrastructure plus gateway (with the embedded sink), streams and MQTT connector."""
    infra.start_platform()
    return infra


@pytest.fixture(scope="session")
def factory(infra, settings):
    f = Factory(settings)
    yield f
    f.close()


@pytest.fixture(scope="session")
def gateway(stack, settings):
    with httpx.Client(base_url=f"http://{settings.host}:{settings.gateway_port}", timeout=10) as c:
        yield c
