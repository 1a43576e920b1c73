"""API client secrets (adr/0221): SHA-256 digests for new secrets, scrypt hashes written before still verify,
anything else refuses."""

from __future__ import annotations

import base64
import hashlib
import secrets

from gateway.auth.passwords import hash_secret, new_secret, verify_secret


def test_a_new_secret_verifies_only_itself():
    secret = new_secret()
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32  # 256 random bits: why no slow hash is needed
    stored = hash_secret(secret)
    assert stored.startswith("sha256$") and secret not in stored
    assert verify_secret(secret, stored)
    assert not verify_secret(new_secret(), stored)
    assert not verify_secret(secret[:-1], stored)


def test_a_scrypt_hash_written_before_still_verifies():
    secret, salt = new_secret(), secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    stored = f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_secret(secret, stored)
    assert not verify_secret(new_secret(), stored)


def test_malformed_or_unknown_hashes_refuse():
    secret = new_secret()
    for stored in ("", "sha256", "md5$" + hashlib.md5(secret.encode()).hexdigest(), "scrypt$1$2$3",
                   "scrypt$x$8$1$AA==$AA==", "plain$" + secret,
                   f"scrypt${2**14}$8$1${base64.b64encode(b'salt').decode()}$not*base64"):
        assert not verify_secret(secret, stored), stored
