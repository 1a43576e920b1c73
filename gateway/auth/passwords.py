"""API client secrets are stored as SHA-256 digests and verified in constant time (adr/0221); people's
passwords (below) as argon2id.

A client secret is 256 random bits made here (``new_secret``), never chosen by a person: guessing it from its
digest is as hard as guessing it, so a slow hash adds nothing — while scrypt cost the token endpoint 84 ms of
CPU per request, which anyone knowing a client id could make the gateway spend. Hashes written before
(``scrypt$…``) still verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def hash_secret(secret: str) -> str:
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(secret: str, stored: str) -> bool:
    alg, _, rest = stored.partition("$")
    if alg == "sha256":
        return hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), rest)
    if alg == "scrypt":  # written before adr/0221
        try:  # a malformed stored hash (its base64 too: binascii.Error is a ValueError) refuses, never raises
            n, r, p, salt, digest = rest.split("$")
            got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                 dklen=32)
            return hmac.compare_digest(got, base64.b64decode(digest))
        except ValueError:
            return False
    return False


def new_secret() -> str:
    return secrets.token_urlsafe(32)


# -- people's passwords (console users, adr/0160): argon2id, parameters from argon2-cffi's RFC 9106 profile
_argon2 = None


def _hasher():
    global _argon2
    if _argon2 is None:
        from argon2 import PasswordHasher

        _argon2 = PasswordHasher()
    return _argon2


MIN_PASSWORD_LENGTH = 12


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """False for a wrong password or no password; with ``stored`` None it still spends one hash's time, so an
    unknown user answers as slowly as a known one."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


_DUMMY: str | None = None


def _dummy() -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password(secrets.token_urlsafe(16))
    return _DUMMY
