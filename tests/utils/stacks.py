"""A whole platform stack of a test module's own, supervised like `fleetstream up` (restarts included)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fleetstream.stack.supervisor import Stack
from runtime.settings import Settings
from schemas.codec import current_binding, restore_binding


@contextmanager
def watched_stack(s: Settings, replicas: dict[str, int] | None = None) -> Iterator[Stack]:
    """Infrastructure and platform started, the supervisor's watch loop running; all stopped after (killed:
    see ``_kill``). The session's schema ids come back after (start_infra binds this stack's registry)."""
    stack = Stack(s, replicas)
    stop = threading.Event()
    watcher = threading.Thread(target=stack.watch, args=(stop,), daemon=True)
    session_ids = current_binding()
    try:
        stack.start_infra()
        stack.start_platform()
        watcher.start()
        yield stack
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(10)
        _kill(stack)
        restore_binding(session_ids)


def _kill(stack: Stack) -> None:
    """A throwaway stack's data dir goes with the test, so nothing needs a clean stop (adr/0196): every child
    but PostgreSQL gets SIGKILL at once instead of one SIGTERM after another (~15 s of a module's teardown).
    PostgreSQL stops cleanly, and all the same at once: a postmaster killed hard leaves a SysV segment behind.
    That a clean stop leaves no orphans is tests/test_stack_cli.py's to prove."""
    for child in stack.children:
        if child.alive():
            try:
                os.killpg(child.pid, signal.SIGTERM if child.name == "postgres" else signal.SIGKILL)
            except ProcessLookupError:
                pass
    for child in stack.children:
        child.stop()  # waits for each; SIGKILLs what is left after its timeout
    stack.children.clear()
    stack.state_file.unlink(missing_ok=True)
