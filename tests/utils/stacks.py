"""A whole platform stack of a test module's own, supervised like `fleetstream up` (restarts included)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fleetstream.stack.supervisor import PLATFORM_ROLES, Stack
from runtime.settings import Settings
from schemas.codec import current_binding, restore_binding


@contextmanager
def watched_stack(s: Settings, replicas: dict[str, int] | None = None,
                  roles: tuple[str, ...] = PLATFORM_ROLES) -> Iterator[Stack]:
    """Infrastructure and platform (``roles`` of it: a module whose tests never reach a role need not wait
    for it) started, the supervisor's watch loop running; all killed after (``Stack.stop(hard=True)``; that a
    clean stop leaves no orphans is tests/test_stack_cli.py's to prove). The session's schema ids come back
    after (start_infra binds this stack's registry)."""
    stack = Stack(s, replicas)
    stop = threading.Event()
    watcher = threading.Thread(target=stack.watch, args=(stop,), daemon=True)
    session_ids = current_binding()
    try:
        stack.start_infra()
        stack.start_platform(roles)
        watcher.start()
        yield stack
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(10)
        stack.stop(hard=True)  # its data dir goes with the test: nothing needs a clean stop (adr/0196)
        restore_binding(session_ids)


def remove_later(path: Path) -> None:
    """Deletes a killed stack's data dir in a process that outlives this one, so the test does not wait for
    it: unlinking a cluster's ~2,000 Kafka segment and index files took the teardown 6-11 s on a busy machine.
    The shell exits at once (nothing for this process to reap); ``rm`` carries on alone."""
    subprocess.run(["sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(path)], check=True)
