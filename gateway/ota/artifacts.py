"""Content-addressed firmware blobs: ``<root>/sha256/<ab>/<sha256>``. The same bytes uploaded twice (by
any tenant, for any version) are stored once; a blob is never rewritten, so a link to it never changes
meaning. Tenancy lives in Postgres (``firmware_releases``), not in the path."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
                    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


MAX_ARTIFACT_BYTES = 1 << 30  # POST /v1/firmware's body limit follows it (gateway/api/main.py)


class ArtifactTooLargeError(ValueError):
    pass


def is_semver(version: str) -> bool:
    return len(version) <= 128 and SEMVER.match(version) is not None


class ArtifactStore:
    """:param root: folder of the blobs (the data dir's ``firmware/``).
    :param max_bytes: largest artifact accepted."""

    def __init__(self, root: Path, *, max_bytes: int = MAX_ARTIFACT_BYTES):
        self.root = root
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, src: BinaryIO) -> tuple[str, int]:
        """Streams ``src`` to disk while hashing it; returns ``(sha256, size)``."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ArtifactTooLargeError(f"artifact exceeds {self.max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            final = self.path(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                os.unlink(tmp)
            else:
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)  # atomic: a reader never sees a half-written blob
            return sha, size
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
