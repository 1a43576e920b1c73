"""How `make test` hands tests to its pytest-xdist workers (adr/0195): `--dist loadfile` (one file's tests on one
worker, in order), except that every file of a package in ``SHARED_PACKAGES`` is one scope, so the expensive
package-scoped fixture of that package starts once per run instead of once per worker that gets one of its
files; and the scopes known to be slow are handed out first, so none of them starts last and leaves the other
worker idle. Only the controller schedules: the workers' collection is left as it is (identical on each)."""

from __future__ import annotations

from collections import OrderedDict

# packages whose files share a package-scoped fixture that costs far more than their tests: the 3-node SASL
# cluster stack (tests/cluster/conftest.py), the console's Chromium (tests/console/conftest.py)
SHARED_PACKAGES = ("tests/cluster/", "tests/console/")

# the slowest scopes of a full run (setup + call + teardown, junit of 2026-12-03 19:37, bench/results/
# 2026-12-03-test-suite.md), slowest first; every other scope follows in xdist's own order. A stale entry
# costs nothing but balance: refresh it from a full run's junit when the slow end of the suite changes.
SLOW_FIRST = (
    "tests/api/test_schemathesis.py",
    "tests/console/",
    "tests/cluster/",
    "tests/stack/test_recovery.py",
    "tests/stack/test_replicas.py",
    "tests/connectors/mqtt/test_outage_backlog.py",
    "tests/ota/test_campaigns.py",
    "tests/chaos/test_chaos_smoke.py",
    "tests/connectors/contract/test_contract.py",
    "tests/bench/test_bench_smoke.py",
    "tests/test_stack_cli.py",
    "tests/stack/test_production_defaults.py",
    "tests/gateway/test_outbox.py",
    "tests/gateway/test_users.py",
    "tests/streams/test_status.py",
    "tests/streams/test_worker_restart.py",
    "tests/sinks/test_sink_crash.py",
    "tests/connectors/mqtt/test_mqtt_connector.py",
    "tests/connectors/mqtt/test_gateway_devices.py",
)

# scopes handed out last: tests/ops need helm and actionlint, which a fresh machine builds from the Go module
# proxy in the background while the suite runs (scripts/ops-tools.sh, at idle CPU priority); the later they
# start, the less a worker waits for a build
LAST = ("tests/ops/",)


def scope_of(nodeid: str) -> str:
    """The scope a test belongs to: its package when that is shared, its file otherwise (what loadfile does)."""
    path = nodeid.split("::", 1)[0]
    return next((p for p in SHARED_PACKAGES if path.startswith(p)), path)


def slow_first(scopes: list[str]) -> list[str]:
    """``scopes`` with the listed slow ones first, in the listed order, and those under ``LAST`` last; the rest
    keep their order."""
    rank = {scope: i for i, scope in enumerate(SLOW_FIRST)}

    def key(scope: str) -> int:
        if scope in rank:
            return rank[scope]
        return len(rank) + (1 if scope.startswith(LAST) else 0)
    return sorted(scopes, key=key)  # stable: unlisted keep their order


def scheduler(config, log):
    """The scheduler for ``--dist loadfile`` (None for any other mode: xdist's own). xdist is imported here,
    in the controller only, so a run without it is unaffected."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedPackageScheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            # the first assignment sees the whole work queue, in xdist's order (scopes with more tests first)
            if not self._ordered:
                self.workqueue = OrderedDict((s, self.workqueue[s]) for s in slow_first(list(self.workqueue)))
                self._ordered = True
            super()._assign_work_unit(node)

    return SharedPackageScheduling(config, log)
