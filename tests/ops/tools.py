"""Where tests/ops find their tools: installed by scripts/ops-tools.sh into ~/.cache/fleetstream (actionlint,
and a separate venv with checkov, check-jsonschema, kubernetes-validate and helm, the Helm v4 SDK shim of
adr/0179); terraform only from PATH (no registry ships it). A missing tool skips its test with the reason, never passes it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FLEETSTREAM_CACHE", Path.home() / ".cache" / "fleetstream"))
OPS_VENV_BIN = CACHE / "ops-venv" / "bin"
KUBE_VERSION = "1.30.0"
# CI builds pin the image by digest; rendering with one lets checkov's digest rule run for real
TEST_DIGEST = "sha256:" + "0123456789abcdef" * 4


# what scripts/ops-tools.sh installs under each marker name (``bin/.building-<name>`` holds the installer's pid)
_MARKERS = {"helm": "ops-venv", "actionlint": "actionlint", "checkov": "ops-venv", "check-jsonschema": "ops-venv",
            "kubernetes-validate": "ops-venv"}
BUILD_WAIT_S = float(os.environ.get("FLEETSTREAM_OPS_TOOLS_WAIT_S", 3600))


def _wait_for_install(name: str) -> None:
    """`make test` installs the ops tools in the background while the suite runs (adr/0186): a test that
    needs one still being installed waits for that install (its progress is in the log it names)."""
    marker = CACHE / "bin" / f".building-{_MARKERS.get(name, name)}"
    deadline = time.monotonic() + BUILD_WAIT_S
    said = False
    while marker.exists() and time.monotonic() < deadline:
        try:
            pid = int(marker.read_text().strip())
            if pid <= 0:
                return
            os.kill(pid, 0)
        except (OSError, ValueError):
            return  # no installer (gone, killed, or an unreadable marker): nothing to wait for
        if not said:
            print(f"\n[tests/ops] waiting for {name} (installing in the background; log: "
                  f"{CACHE / 'logs' / 'ops-tools.log'})", file=sys.__stderr__, flush=True)
            said = True
        time.sleep(2)


def tool(name: str) -> str:
    """Path of a tool, or skip the calling test saying how to get it."""
    _wait_for_install(name)
    # the venv first: a helm v3 binary an older checkout built into bin/ must not shadow the shim (adr/0179)
    for cand in (OPS_VENV_BIN / name, CACHE / "bin" / name):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which(name)
    if found:
        return found
    pytest.skip(f"{name} not installed: run `bash scripts/ops-tools.sh` (it builds/installs it into {CACHE})")


def run(argv: list[str], *, cwd: Path = ROOT, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def checkov(target_dir: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    # offline: no guideline download, no platform mapping, no version check
    env = {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "ENABLE_DEFINITION_KEY": "False",
           "CKV_IGNORE_HIDDEN_DIRECTORIES": "true", "LOG_LEVEL": "ERROR"}
    return run([tool("checkov"), "-d", str(target_dir), "--config-file", str(config), "--skip-download",
                "--output", "json", *extra], env=env, timeout=600)
