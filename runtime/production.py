"""What ``FLEETSTREAM_ENV=prod`` refuses at start-up (adr/0112): a secret the platform would otherwise make up
or ship with. Each problem names the setting or file to provide; a process refuses to start on any.

- the built-in application database password (``FLEETSTREAM_POSTGRES_APP_PASSWORD``);
- token signing keys the gateway would generate: prod expects them provided in ``<data_dir>/keys/jwt``;
- a platform root CA the local stack would generate: `up` in prod expects ``<data_dir>/pki/ca.crt`` + ``ca.key``;
- a generated master key, or one kept inside the data dir or readable by other users
  (``FLEETSTREAM_SECRETS_MASTER_KEY`` or ``FLEETSTREAM_SECRETS_MASTER_KEY_FILE``);
- for every role: the dev flag that lets test-only Kafka security modes start
  (``FLEETSTREAM_KAFKA_ALLOW_TEST_ONLY_SECURITY``, adr/0191), and those modes themselves.
"""

from __future__ import annotations

import stat

from runtime.settings import DEFAULT_APP_PASSWORD, Settings

MIN_MASTER_KEY_CHARS = 32

# what each entry point needs provided. Only the local stack (`up`) would generate a root CA; a gateway
# never does (its tenant CAs are signed by a provided root, offline or in Vault in production, adr/0034)
NEEDS = {
    "gateway": ("app_password", "jwt_keys", "master_key"),
    "up": ("app_password", "jwt_keys", "root_ca", "master_key"),
    "admin": ("app_password", "master_key"),
    "platform-token": ("jwt_keys",),
}


# what every entry point is checked for, whatever it needs
ALWAYS = ("kafka_test_only",)


class UnsafeConfiguration(RuntimeError):
    pass


def problems(s: Settings, role: str) -> list[str]:
    if not s.is_prod:
        return []
    found = []
    for need in (*ALWAYS, *NEEDS.get(role, ())):
        found += CHECKS[need](s)
    return found


def check(s: Settings, role: str) -> None:
    found = problems(s, role)
    if found:
        raise UnsafeConfiguration("FLEETSTREAM_ENV=prod refuses to start:\n  - " + "\n  - ".join(found))


def _app_password(s: Settings) -> list[str]:
    if s.postgres_app_password == DEFAULT_APP_PASSWORD:
        return ["FLEETSTREAM_POSTGRES_APP_PASSWORD is the built-in default; set the application role's own "
                "password (from the secrets manager)"]
    return []


def _jwt_keys(s: Settings) -> list[str]:
    if not any(s.jwt_keys_dir.glob("*.pem")):
        return [f"no token signing key in {s.jwt_keys_dir} (FLEETSTREAM_DATA_DIR/keys/jwt): prod does not generate "
                "one; mount the keys there (adr/0034) or create one on purpose with "
                "`fleetstream admin rotate-signing-key`"]
    return []


def _root_ca(s: Settings) -> list[str]:
    missing = [p.name for p in (s.pki_dir / "ca.crt", s.pki_dir / "ca.key") if not p.exists()]
    if missing:
        return [f"no platform root CA ({', '.join(missing)} missing in {s.pki_dir}, FLEETSTREAM_DATA_DIR/pki): prod "
                "does not generate one; provide the CA that signs tenant CAs (adr/0034)"]
    return []


def _master_key(s: Settings) -> list[str]:
    if s.secrets_master_key:
        if len(s.secrets_master_key) < MIN_MASTER_KEY_CHARS:
            return [f"FLEETSTREAM_SECRETS_MASTER_KEY is shorter than {MIN_MASTER_KEY_CHARS} characters"]
        return []
    path = s.secrets_master_key_file
    if path is None:
        return ["set FLEETSTREAM_SECRETS_MASTER_KEY or FLEETSTREAM_SECRETS_MASTER_KEY_FILE (a file outside the data "
                "dir, e.g. a mounted secret, or a Vault-backed key store): prod refuses a generated master key"]
    path = path.resolve()
    if path.is_relative_to(s.root):
        return [f"FLEETSTREAM_SECRETS_MASTER_KEY_FILE {path} is inside the data dir {s.root}: the master key must "
                "not sit beside the keys it seals"]
    try:
        st = path.stat()
        value = path.read_bytes().strip()
    except OSError as exc:
        return [f"FLEETSTREAM_SECRETS_MASTER_KEY_FILE {path}: {exc.strerror}"]
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [f"FLEETSTREAM_SECRETS_MASTER_KEY_FILE {path} is readable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); make it 0600 or 0400"]
    if len(value) < MIN_MASTER_KEY_CHARS:
        return [f"FLEETSTREAM_SECRETS_MASTER_KEY_FILE {path} holds fewer than {MIN_MASTER_KEY_CHARS} characters"]
    return []


def _kafka_test_only(s: Settings) -> list[str]:
    from runtime.kafka_security import ALLOW_FLAG, only_for_tests

    found = [f"{knob} is for tests only" for knob in only_for_tests(s)]
    if s.kafka_allow_test_only_security:
        found.append(f"{ALLOW_FLAG} is a dev flag: prod does not start test-only Kafka security")
    return found


CHECKS = {"kafka_test_only": _kafka_test_only, "app_password": _app_password, "jwt_keys": _jwt_keys, "root_ca": _root_ca, "master_key": _master_key}
