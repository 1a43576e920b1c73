"""PostgreSQL for the control plane (adr/0004), from Debian's server binaries, run on loopback TCP.

As root the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root); the
superuser is ``fleetstream_owner`` with a generated password kept 0600 in the data directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from runtime.settings import Settings, owner_password

from .process import Child, StartupError, as_user


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    exe = shutil.which(name)
    if not exe:
        raise StartupError(f"PostgreSQL {name} not found: run scripts/setup.sh")
    return exe


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError as exc:
        raise StartupError("running as root needs the 'postgres' system user (Debian postgresql)") from exc


def server_group() -> str | None:
    """The group that must pass through the data dir to reach the server's folder (None: we are the server's
    user)."""
    return _run_as()


def postgres_child(s: Settings) -> Child:
    home = s.root / "postgres"
    data, sock = home / "data", home / "sock"
    home.mkdir(parents=True, exist_ok=True)
    user = _run_as()
    if user:
        _open_path_for(user, home, s.root)  # initdb below needs it already
    password = owner_password(s)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        pwfile = home / ".pwfile"
        pwfile.write_text(password)
        if user:
            for p in (data, pwfile):
                shutil.chown(p, user, user)
        r = subprocess.run([_bin("initdb"), "-D", str(data), "-U", "fleetstream_owner", "--pwfile", str(pwfile),
                            "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C"],
                           capture_output=True, text=True, **as_user(user))
        pwfile.unlink()
        if r.returncode != 0:
            raise StartupError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
    sock.mkdir(exist_ok=True)
    if user:
        shutil.chown(sock, user, user)
    argv = [_bin("postgres"), "-D", str(data), "-h", s.host, "-p", str(s.postgres_port), "-k", str(sock),
            "-c", "max_connections=200", "-c", "shared_buffers=128MB", "-c", "fsync=on",
            "-c", "logging_collector=off"]
    child = Child("postgres", argv, s.logs_dir / "postgres.log", user=user)
    # a hard stop is Postgres's immediate shutdown (no checkpoint): a SIGKILLed postmaster would leave its
    # System V shared memory segment behind, one per throwaway stack
    child.kill_signal = signal.SIGQUIT
    if user:  # again at every restart: a folder above may have been closed meanwhile (pytest resets its own)
        child.before_start = lambda: _open_path_for(user, home, s.root)
    return child


def _open_path_for(user: str, path: Path, root: Path) -> None:
    """The server process must traverse to its data dir. Inside the stack's data dir through the server's
    group (g+x, nothing for others: keys live there); above it, o+x on the parents that lack it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if parent == root or root in parent.parents:
            shutil.chown(parent, group=user)
            os.chmod(parent, (mode | 0o010) & ~0o007)
        elif not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def postgres_ready(dsn: str) -> bool:
    import psycopg

    with psycopg.connect(dsn, connect_timeout=2) as conn:
        conn.execute("select 1")
    return True


def maintenance_dsn(s: Settings) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(s.owner_dsn), "dbname": "postgres"})


def ensure_database(s: Settings) -> None:
    """Creates the fleetstream database (the cluster's maintenance DB is 'postgres')."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    dbname = conninfo_to_dict(s.owner_dsn).get("dbname", "fleetstream")
    with psycopg.connect(maintenance_dsn(s), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname=%s", (dbname,)).fetchone():
            conn.execute(f'create database "{dbname}"')
