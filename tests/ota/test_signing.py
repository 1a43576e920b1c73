"""What a device relies on before it flashes anything: the manifest verifies only with its tenant's
key and only over the exact bytes that were signed; the artifact must match the manifest; a download
link is good for one blob, for a short time, and cannot be forged. Pure: a key store in a temp dir."""

from __future__ import annotations

import hashlib
import json

import pytest

from gateway.identity.secrets import FileKeyStore
from gateway.ota.download_links import DownloadLinks, LinkError
from gateway.ota.signing import (
    ManifestError,
    ManifestSigner,
    build_manifest,
    verify_artifact,
    verify_manifest,
)


@pytest.fixture
def signer(tmp_path):
    return ManifestSigner(FileKeyStore(tmp_path / "ks", b"0123456789abcdef0123"))


def _signed(signer, tenant="t1", data=b"firmware image"):
    m = build_manifest(tenant_id=tenant, device_type="valve", version="1.2.0", sha256=hashlib.sha256(data).hexdigest(),
                       size=len(data), kid=signer.key_id(tenant))
    return m, signer.sign(m, tenant), data


def test_good_manifest_and_artifact_verify(signer):
    m, sig, data = _signed(signer)
    manifest = verify_manifest(m, sig, signer.public_key_pem("t1"))
    assert manifest["version"] == "1.2.0" and manifest["key_id"] == signer.key_id("t1")
    verify_artifact(manifest, data)


def test_tampered_manifest_or_another_tenants_key_is_rejected(signer):
    m, sig, _ = _signed(signer)
    forged = json.dumps(json.loads(m) | {"version": "9.9.9"}, sort_keys=True, separators=(",", ":"))
    with pytest.raises(ManifestError, match="signature"):
        verify_manifest(forged, sig, signer.public_key_pem("t1"))
    with pytest.raises(ManifestError, match="signature"):
        verify_manifest(m, sig, signer.public_key_pem("t2"))


def test_tampered_artifact_is_rejected(signer):
    m, sig, data = _signed(signer)
    manifest = verify_manifest(m, sig, signer.public_key_pem("t1"))
    with pytest.raises(ManifestError, match="sha256"):
        verify_artifact(manifest, b"firmware imagE")
    with pytest.raises(ManifestError, match="bytes"):
        verify_artifact(manifest, data + b"\0")


def test_signing_key_survives_a_restart_sealed(tmp_path):
    ks = FileKeyStore(tmp_path / "ks", b"0123456789abcdef0123")
    pem = ManifestSigner(ks).public_key_pem("t1")
    assert ManifestSigner(FileKeyStore(tmp_path / "ks", b"0123456789abcdef0123")).public_key_pem("t1") == pem
    sealed = (tmp_path / "ks" / "ota-signing" / "t1.sealed").read_bytes()
    assert ManifestSigner(ks)._key("t1").private_bytes_raw() not in sealed


def test_download_links_expire_and_cannot_be_forged(tmp_path):
    links = DownloadLinks(FileKeyStore(tmp_path / "ks", b"0123456789abcdef0123"))
    tok = links.issue(tenant_id="t1", device_id="d1", sha256="a" * 64, ttl_s=60)
    assert links.verify(tok).device_id == "d1"
    body, sig = tok.split(".")
    with pytest.raises(LinkError, match="signature"):
        links.verify(body[:-2] + "xx." + sig)
    with pytest.raises(LinkError, match="expired"):
        links.verify(links.issue(tenant_id="t1", device_id="d1", sha256="a" * 64, ttl_s=-1))
    other = DownloadLinks(FileKeyStore(tmp_path / "other", b"another-master-key-xx"))
    with pytest.raises(LinkError):
        other.verify(tok)
