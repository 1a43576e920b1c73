"""One local 3-node SASL_SSL/SCRAM cluster stack (adr/0132, adr/0190) for every test module of this package, started once:
its own ports (the session's minus 6000), so it runs beside the session's single-broker stack."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from fleetstream.stack.supervisor import PLATFORM_ROLES, Stack
from runtime.settings import Settings
from schemas.codec import current_binding, restore_binding
from tests.conftest import TEST_PORTS
from tests.utils.stacks import remove_later

CLUSTER_PORTS = {k: v - 6000 for k, v in TEST_PORTS.items()}
CLUSTER_ROLES = tuple(role for role in PLATFORM_ROLES if role != "connector-coap")


@pytest.fixture(scope="package")
def cluster():
    before = current_binding()
    root = Path(tempfile.mkdtemp(prefix="fleetstream-cluster-test-"))
    s = Settings(data_dir=root, **CLUSTER_PORTS, kafka_brokers=3, kafka_test_oauth_listener=True,
                 kafka_test_mtls_listener=True, kafka_allow_test_only_security=True, sink_batch_ms=100)
    stack = Stack(s)
    try:
        stack.start_infra()
        # the roles its tests drive (the gateway with the embedded sink, the streams worker, the MQTT connector):
        # no test here reaches the CoAP connector, whose process would only share the two cores at start-up
        stack.start_platform(roles=CLUSTER_ROLES)
        binding = current_binding()
        yield stack, binding
    finally:
        stack.stop(hard=True)  # its data dir goes next: a graceful stop took 30-40 s, mostly waiting (adr/0195)
        restore_binding(before)
        remove_later(root)
        s.master_key_path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _cluster_schema_ids(request):
    # only a test on the cluster starts it: the package's unit tests (test_cluster_tls_units) do not need it
    if {"cluster", "s"} & set(request.fixturenames):
        restore_binding(request.getfixturevalue("cluster")[1])


@pytest.fixture(scope="package")
def s(cluster) -> Settings:
    return cluster[0].s
