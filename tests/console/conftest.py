"""One Chromium for the whole session, driven by Playwright (Python) — Debian's browser, never
`playwright install` (adr/0164). Each test gets a fresh context (its own cookies) and signs in through the
page."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FLEETSTREAM_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (make setup does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where page screenshots go: docs/screenshots when FLEETSTREAM_CONSOLE_SCREENSHOTS names it (to refresh
    the committed ones), a temporary folder otherwise."""
    out = Path(os.environ.get("FLEETSTREAM_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out
