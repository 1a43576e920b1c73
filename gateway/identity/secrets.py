"""Where the platform keeps private keys (tenant CA keys): a small ``KeyStore`` interface (adr/0031).

The file implementation encrypts every key at rest with AES-256-GCM under a key derived from the master
key in settings; the entry's name is authenticated too, so one tenant's blob cannot be swapped for
another's. A Vault (Transit or KV v2) implementation fits the same two methods.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_MAGIC = b"fsks1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")


class KeyStoreError(Exception):
    pass


class KeyStore(Protocol):
    """Secret blobs by name. Implementations never write a secret in the clear."""

    def get(self, name: str) -> bytes | None: ...

    def put(self, name: str, secret: bytes) -> None: ...


class FileKeyStore:
    """``<dir>/<name>.sealed`` files (0600), AES-256-GCM with the name as associated data.

    :param directory: where sealed blobs live.
    :param master_key: any high-entropy secret; HKDF-SHA256 turns it into the AES key.
    """

    def __init__(self, directory: Path, master_key: bytes):
        if len(master_key) < 16:
            raise KeyStoreError("the master key must have at least 16 bytes")
        self.dir = directory
        self._aead = AESGCM(HKDF(hashes.SHA256(), 32, salt=b"fleetstream-keystore", info=b"v1").derive(master_key))

    def _path(self, name: str) -> Path:
        if not _NAME.match(name) or ".." in name:
            raise KeyStoreError(f"bad secret name {name!r}")
        return self.dir / f"{name}.sealed"

    def put(self, name: str, secret: bytes) -> None:
        from runtime.pki import write_private

        nonce = os.urandom(12)
        write_private(self._path(name), _MAGIC + nonce + self._aead.encrypt(nonce, secret, name.encode()))

    def get(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        if not blob.startswith(_MAGIC):
            raise KeyStoreError(f"{path} is not a sealed secret")
        nonce, body = blob[len(_MAGIC):len(_MAGIC) + 12], blob[len(_MAGIC) + 12:]
        try:
            return self._aead.decrypt(nonce, body, name.encode())
        except Exception as exc:  # InvalidTag: wrong master key or tampered file
            raise KeyStoreError(f"cannot unseal {name!r}: wrong master key or tampered file") from exc


def master_key_from_settings(s) -> bytes:
    """The master key: ``FLEETSTREAM_SECRETS_MASTER_KEY``, else the file ``FLEETSTREAM_SECRETS_MASTER_KEY_FILE``;
    in dev only, a generated one kept 0600 beside the data dir (``s.master_key_path``), never in it, so the
    key does not travel with the sealed keys it protects (adr/0112)."""
    configured = getattr(s, "secrets_master_key", None)
    if configured is not None:
        value = configured.get_secret_value() if hasattr(configured, "get_secret_value") else str(configured)
        if value:
            return value.encode()
    path = Path(s.master_key_path)
    if getattr(s, "secrets_master_key_file", None) is not None:
        if s.env != "dev" and path.resolve().is_relative_to(s.root):
            raise KeyStoreError(f"FLEETSTREAM_SECRETS_MASTER_KEY_FILE ({path}) is inside the data dir {s.root}: "
                                "outside dev the master key must not sit beside the keys it seals")
        try:
            value = path.read_bytes().strip()
        except OSError as exc:
            raise KeyStoreError(f"FLEETSTREAM_SECRETS_MASTER_KEY_FILE: cannot read {path}: {exc}") from exc
        if not value:
            raise KeyStoreError(f"FLEETSTREAM_SECRETS_MASTER_KEY_FILE: {path} is empty")
        return value
    if s.env != "dev":
        raise KeyStoreError("FLEETSTREAM_SECRETS_MASTER_KEY or FLEETSTREAM_SECRETS_MASTER_KEY_FILE must be set "
                            "outside dev (a generated master key is refused)")
    _move_legacy_key(s.root / "keys" / "master.key", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: the gateway and the CLI may start at once; exactly one generates the key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)))
    return path.read_bytes().strip()


def _move_legacy_key(old: Path, new: Path) -> None:
    """Dev data dirs from before adr/0112 kept the generated key beside the sealed keys: move it out."""
    try:
        key = old.read_bytes()
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileNotFoundError, FileExistsError):  # nothing to move, or another process moved it
        return
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    old.unlink(missing_ok=True)


def keystore_from_settings(s) -> KeyStore:
    return FileKeyStore(s.root / "keys" / "sealed", master_key_from_settings(s))
