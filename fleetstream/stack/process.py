"""Child processes of the local stack: started in their own process group, logged to a file,
stopped with SIGTERM then SIGKILL so a clean shutdown leaves no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

# what a child creates is its owner's alone: Kafka logs, Mosquitto's store, ClickHouse parts hold tenant data
PRIVATE_UMASK = 0o077


class StartupError(RuntimeError):
    pass


class StartupCancelled(StartupError):
    """A wait given up because another part of the start-up failed."""


class Child:
    def __init__(self, name: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, user: str | None = None):
        self.name, self.argv, self.log, self.env, self.cwd, self.user = name, argv, log, env, cwd, user
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0  # time.monotonic() of the last start
        self.liveness: Callable[[], bool] | None = None  # the supervisor restarts a live child failing it
        self.before_start: Callable[[], None] | None = None  # run before every start, restarts included
        self.kill_signal = signal.SIGKILL  # what ``kill`` sends

    def respawn(self) -> Child:
        """A new, not yet started child with the same command, environment, user and hooks."""
        fresh = Child(self.name, self.argv, self.log, env=self.env, cwd=self.cwd, user=self.user)
        fresh.liveness, fresh.before_start, fresh.kill_signal = self.liveness, self.before_start, self.kill_signal
        return fresh

    def start(self) -> None:
        if self.before_start is not None:
            self.before_start()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})}, cwd=self.cwd, start_new_session=True, umask=PRIVATE_UMASK,
            **as_user(self.user))
        out.close()
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of a dead child's process group: a postmaster killed hard leaves its
        backends attached to the old shared memory, and a new server would refuse to start beside them."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """Signals the child's whole process group with ``kill_signal`` now, without waiting (``stop`` reaps
        it): the hard stop of a throwaway stack."""
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, self.kill_signal)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str,
                   cancel: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise StartupCancelled(f"{self.name}: stopped waiting ({what}): another component failed to start")
            if not self.alive():
                raise StartupError(f"{self.name} exited while starting ({what}); log {self.log}:\n{self.tail()}")
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise StartupError(f"{self.name} not ready after {timeout:.0f}s ({what}); log {self.log}:\n{self.tail()}")


def as_user(user: str | None) -> dict:
    """subprocess arguments that drop to ``user`` entirely: its own group and no supplementary groups
    (root's group would otherwise decide access to root-owned folders)."""
    if not user:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
