"""Device certificates from per-tenant issuing CAs (intermediates under the platform root, adr/0003).

The platform chooses the subject (CN ``<tenant>.<device>``), never the requester: a certificate can only
ever name the device it was issued for. A tenant CA's private key lives in a ``KeyStore`` (sealed at rest,
adr/0031); its certificate is public and stays beside the platform PKI.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.broker.dynsec import device_username
from runtime.pki import Issuer, PlatformPKI, cert_pem, key_pem, new_key, tenant_ca_cn

from .secrets import KeyStore


class CertificateRequestError(ValueError):
    """A CSR the platform will not sign (bad PEM, bad signature, unsupported key)."""


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str  # leaf followed by the tenant CA: what a device presents
    private_key_pem: str | None  # only when the platform generated the key; shown once
    serial: str
    fingerprint_sha256: str
    not_after: dt.datetime


class TenantCAs:
    """:param pki: the platform PKI (root CA signs each tenant CA).
    :param keystore: where tenant CA private keys are sealed."""

    def __init__(self, pki: PlatformPKI, keystore: KeyStore):
        self.pki = pki
        self.keystore = keystore
        self._cache: dict[str, Issuer] = {}
        self._lock = threading.Lock()

    def _dir(self, tenant_id: str) -> Path:
        return self.pki.dir / "tenants" / tenant_id

    def ensure(self, tenant_id: str) -> Issuer:
        with self._lock:
            issuer = self._cache.get(tenant_id)
            if issuer is None:
                issuer = self._cache[tenant_id] = self._load_or_create(tenant_id)
            return issuer

    def _load_or_create(self, tenant_id: str) -> Issuer:
        d, name = self._dir(tenant_id), f"tenant-ca/{tenant_id}"
        sealed = self.keystore.get(name)
        legacy = d / "ca.key"  # data dirs from before the key store kept the key in the clear: seal it
        if sealed is None and legacy.exists():
            sealed = legacy.read_bytes()
            self.keystore.put(name, sealed)
            legacy.unlink()
        if sealed is None or not (d / "ca.crt").exists():
            key = new_key()
            cert = self.pki.root().sign(tenant_ca_cn(tenant_id), key.public_key(), days=3650, ca=True)
            self.keystore.put(name, key_pem(key))
            d.mkdir(parents=True, exist_ok=True)
            (d / "ca.crt").write_bytes(cert_pem(cert))
            return Issuer(cert, key)
        cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
        return Issuer(cert, serialization.load_pem_private_key(sealed, None))  # type: ignore[arg-type]

    def ca_certificate_pem(self, tenant_id: str) -> str | None:
        """The tenant CA certificate, or None when the tenant has none; never creates one (callers may pass
        ids from untrusted input)."""
        with self._lock:
            if tenant_id in self._cache:
                return cert_pem(self._cache[tenant_id].cert).decode()
        try:
            path = self._dir(tenant_id) / "ca.crt"
            return path.read_text() if "/" not in tenant_id and ".." not in tenant_id and path.exists() else None
        except OSError:
            return None

    def issue_for_device(self, tenant_id: str, device_id: str, *, csr_pem: bytes | None = None,
                         days: int = 365) -> IssuedCertificate:
        ca = self.ensure(tenant_id)
        key = None
        if csr_pem is not None:
            public_key = _csr_public_key(csr_pem)
        else:
            key = new_key()
            public_key = key.public_key()
        cert = ca.sign(device_username(tenant_id, device_id), public_key, days=days)
        chain = cert_pem(cert) + cert_pem(ca.cert)
        return IssuedCertificate(chain.decode(), key_pem(key).decode() if key else None, format(cert.serial_number, "x"),
                                 cert.fingerprint(hashes.SHA256()).hex(), cert.not_valid_after_utc)

    def crl(self, tenant_id: str, revoked: list[tuple[str, dt.datetime]], *, next_update_h: int = 24) -> x509.CertificateRevocationList:
        """A fresh CRL of the tenant CA listing ``(serial_hex, revoked_at)``."""
        ca = self.ensure(tenant_id)
        now = dt.datetime.now(dt.UTC)
        b = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
             .last_update(now).next_update(now + dt.timedelta(hours=next_update_h)))
        for serial, at in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                                          .revocation_date(at).build())
        return b.sign(ca.key, hashes.SHA256())


def _csr_public_key(csr_pem: bytes):
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertificateRequestError("csr_pem is not a PEM certificate signing request") from exc
    if not csr.is_signature_valid:
        raise CertificateRequestError("the CSR's signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "secp384r1"):
        raise CertificateRequestError("the CSR key must be ECDSA P-256 or P-384")
    return key
