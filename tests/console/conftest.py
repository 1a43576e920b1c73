"""One Chromium for this package's tests, driven by Playwright (Python) — Debian's browser, never
`playwright install` (adr/0164). Each test gets a fresh context (its own cookies) and signs in through the
page."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FLEETSTREAM_CHROMIUM", "/usr/bin/chromium")


# package scope, not session: Playwright's sync API keeps an event loop running in the main thread while it
# is open, and later packages' tests that call asyncio.run() would fail ("cannot be called from a running
# event loop"); closed after tests/console, the loop is gone
@pytest.fixture(scope="package")
def browser():
    # a missing browser fails the tests (never a skip): make setup installs Debian's package
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if chromium is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (make setup does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where page screenshots go: the folder FLEETSTREAM_CONSOLE_SCREENSHOTS names (`make screenshots` refreshes
    the committed ones in docs/console), a temporary folder otherwise."""
    out = Path(os.environ.get("FLEETSTREAM_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out
