"""The xdist scheduling of `make test` (adr/0195) on a toy suite run by the installed pytest-xdist with two
workers: a shared package's fixture starts once, its files' tests keep their order, a listed slow file is
handed out before a file with more tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.utils import scheduling

TOY_CONFTEST = """
import importlib.util, os
spec = importlib.util.spec_from_file_location("scheduling", {path!r})
scheduling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scheduling)

def pytest_xdist_make_scheduler(config, log):
    return scheduling.scheduler(config, log)
"""

RECORD = """
import os
def record(what):
    with open(os.environ["TOY_LOG"], "a") as f:
        f.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {what}\\n")
"""


def _toy(root: Path) -> None:
    files = {
        "conftest.py": TOY_CONFTEST.format(path=scheduling.__file__),
        "tests/__init__.py": "",
        "tests/record.py": RECORD,
        "tests/cluster/__init__.py": "",
        "tests/cluster/conftest.py": """
            import pytest
            from tests.record import record
            @pytest.fixture(scope="package", autouse=True)
            def cluster():
                record("cluster-start")
            """,
        "tests/stack/__init__.py": "",
        # listed in SLOW_FIRST: one test only, so xdist alone would hand it out after the larger files
        "tests/stack/test_recovery.py": "from tests.record import record\ndef test_r(): record('recovery')\n",
    }
    for name in ("a", "b", "c"):  # more tests per file than any other file: xdist would start two at once
        files[f"tests/cluster/test_{name}.py"] = "from tests.record import record\n" + "".join(
            f"def test_{name}{i}(): record('cluster/{name}{i}')\n" for i in range(6))
    for name in ("x", "y"):
        files[f"tests/test_{name}.py"] = "from tests.record import record\n" + "".join(
            f"def test_{name}{i}(): record('{name}{i}')\n" for i in range(3))
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


def _run(root: Path, *args: str) -> list[tuple[str, str]]:
    log = root / "log.txt"
    log.unlink(missing_ok=True)
    # only xdist among the installed plugins: the others' imports cost seconds in each of the three processes
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "xdist.plugin", "-p", "no:cacheprovider",
                        "-n", "2", *args, "tests"],
                       cwd=root, capture_output=True, text=True, timeout=300,
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
                            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "TOY_LOG": str(log)})
    assert r.returncode == 0, r.stdout + r.stderr
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_a_shared_package_starts_once_in_order_and_listed_slow_files_go_first(tmp_path):
    _toy(tmp_path)
    ran = _run(tmp_path, "--dist", "loadfile")
    assert [what for _, what in ran].count("cluster-start") == 1
    on = {what: worker for worker, what in ran}
    cluster = [what for _, what in ran if what.startswith("cluster")]
    assert {on[what] for what in cluster} == {on["cluster-start"]}
    assert cluster == ["cluster-start"] + [f"cluster/{n}{i}" for n in "abc" for i in range(6)]
    # the two listed scopes are the two workers' first work, though the toy's other files have more tests
    firsts = {}
    for worker, what in ran:
        firsts.setdefault(worker, what)
    assert sorted(firsts.values()) == ["cluster-start", "recovery"]


def test_scopes_and_order():
    assert scheduling.scope_of("tests/cluster/test_sasl_cluster.py::test_x[a::b]") == "tests/cluster/"
    assert scheduling.scope_of("tests/gateway/test_matrix.py::test_y") == "tests/gateway/test_matrix.py"
    assert scheduling.slow_first(["tests/ops/test_helm.py", "tests/b.py", "tests/stack/test_recovery.py", "tests/a.py",
                                  "tests/cluster/"]) == \
        ["tests/cluster/", "tests/stack/test_recovery.py", "tests/b.py", "tests/a.py", "tests/ops/test_helm.py"]
