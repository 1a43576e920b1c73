"""The floors of adr/0120 hold: import-linter's contracts (pyproject.toml) pass on the tree, and fail when a
deployable imports upwards or sideways, shown on a copy of the tree with one wrong import added. Every package
says in its docstring what lives there and what it may import."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "runtime", "connectors", "streams", "sinks", "gateway", "fleetstream")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def _copy_tree(dst: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.avsc"))
    return dst


def test_the_tree_keeps_every_contract():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize("module, wrong, contract", [
    ("connectors/uplink.py", "import fleetstream.cli", "Floors"),  # a deployable importing the top floor
    ("sinks/base.py", "import streams.rules", "Floors"),  # siblings importing each other
    ("schemas/topics.py", "import runtime.settings", "Floors"),  # the leaf importing upwards
    ("gateway/app.py", "import connectors.mqtt.downlink", "The gateway reaches connectors only"),
])
def test_a_wrong_import_breaks_a_contract(tmp_path, module, wrong, contract):
    tree = _copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{wrong}  # deliberately wrong\n")
    r = _lint(tree)
    assert r.returncode != 0, r.stdout
    assert "0 broken" not in r.stdout, r.stdout
    broken = " ".join(r.stdout.split("Broken contracts")[-1].split())  # contract names wrap across lines
    assert contract in broken, r.stdout


@pytest.mark.parametrize("pkg", sorted({p.parent for p in ROOT.glob("*/**/__init__.py")
                                         if p.parts[len(ROOT.parts)] in PACKAGES}),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_says_what_lives_there(pkg):
    init = pkg / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) if init.exists() else None
    assert doc and len(doc) > 30, f"{pkg.relative_to(ROOT)}/__init__.py needs a docstring: what lives here"
