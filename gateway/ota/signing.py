"""Firmware manifests signed with a per-tenant Ed25519 key.

The private key lives in the platform's ``KeyStore`` (the same sealed store as the tenant CA keys,
gateway/identity/secrets.py), under ``ota-signing/<tenant_id>``. A device verifies the signature over the
manifest's exact bytes with its tenant's public key (provisioned at manufacture, or fetched once over
mTLS/HTTPS), then checks the downloaded bytes against the manifest's sha256 and size.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.identity.secrets import KeyStore

MANIFEST_SCHEMA = "fleetstream.ota.manifest/1"


class ManifestError(ValueError):
    """A manifest that does not verify or does not describe the bytes it came with."""


def canonical_json(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def build_manifest(*, tenant_id: str, device_type: str, version: str, sha256: str, size: int,
                   kid: str, created: dt.datetime | None = None) -> str:
    created = created or dt.datetime.now(dt.UTC)
    return canonical_json({"schema": MANIFEST_SCHEMA, "tenant_id": tenant_id, "device_type": device_type,
                           "version": version, "sha256": sha256, "size": size, "key_id": kid,
                           "created": created.isoformat(timespec="seconds")})


class ManifestSigner:
    """:param keystore: where each tenant's signing key is sealed."""

    def __init__(self, keystore: KeyStore):
        self.keystore = keystore
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._lock = threading.Lock()

    def _key(self, tenant_id: str) -> Ed25519PrivateKey:
        with self._lock:
            key = self._keys.get(tenant_id)
            if key is None:
                name = f"ota-signing/{tenant_id}"
                raw = self.keystore.get(name)
                if raw is None:
                    key = Ed25519PrivateKey.generate()
                    self.keystore.put(name, key.private_bytes(serialization.Encoding.Raw,
                                                              serialization.PrivateFormat.Raw,
                                                              serialization.NoEncryption()))
                else:
                    key = Ed25519PrivateKey.from_private_bytes(raw)
                self._keys[tenant_id] = key
            return key

    def public_key(self, tenant_id: str) -> Ed25519PublicKey:
        return self._key(tenant_id).public_key()

    def public_key_pem(self, tenant_id: str) -> str:
        return self.public_key(tenant_id).public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def key_id(self, tenant_id: str) -> str:
        return key_id(self.public_key(tenant_id))

    def sign(self, manifest_json: str, tenant_id: str) -> str:
        return base64.b64encode(self._key(tenant_id).sign(manifest_json.encode())).decode()


def verify_manifest(manifest_json: str, signature_b64: str, public_key_pem: str | bytes) -> dict:
    """What a device does first: the signature must verify over the exact manifest bytes. Returns the
    parsed manifest; raises ``ManifestError`` otherwise."""
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    public_key = serialization.load_pem_public_key(pem)
    if not isinstance(public_key, Ed25519PublicKey):
        raise ManifestError("the signing key is not Ed25519")
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), manifest_json.encode())
    except (InvalidSignature, ValueError) as exc:
        raise ManifestError("manifest signature does not verify") from exc
    manifest = json.loads(manifest_json)
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise ManifestError(f"unknown manifest schema {manifest.get('schema')!r}")
    return manifest


def verify_artifact(manifest: dict, data: bytes) -> None:
    """Second step on the device: the downloaded bytes must be the ones the signed manifest names."""
    if len(data) != manifest["size"]:
        raise ManifestError(f"artifact is {len(data)} bytes, manifest says {manifest['size']}")
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ManifestError("artifact sha256 does not match the signed manifest")
