"""Device certificates from per-tenant issuing CAs (intermediates under the platform root, adr/0003).

The platform chooses the subject (CN ``<tenant>.<device>``), never the requester: a certificate can only
ever name the device it was issued for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fleetstream.stack.pki import Issuer, PlatformPKI, cert_pem, key_pem, load_issuer, new_key, write_private
from gateway.broker.dynsec import device_username


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str  # leaf followed by the tenant CA: what a device presents
    private_key_pem: str | None  # only when the platform generated the key; shown once
    serial: str
    fingerprint_sha256: str


class TenantCAs:
    def __init__(self, pki: PlatformPKI):
        self.pki = pki

    def _dir(self, tenant_id: str) -> Path:
        return self.pki.dir / "tenants" / tenant_id

    def ensure(self, tenant_id: str) -> Issuer:
        d = self._dir(tenant_id)
        if not (d / "ca.crt").exists():
            key = new_key()
            cert = self.pki.root().sign(f"fleetstream tenant {tenant_id} CA", key.public_key(), days=3650, ca=True)
            write_private(d / "ca.key", key_pem(key))
            (d / "ca.crt").write_bytes(cert_pem(cert))
        return load_issuer(d / "ca.crt", d / "ca.key")

    def issue_for_device(self, tenant_id: str, device_id: str, *, csr_pem: bytes | None = None,
                         days: int = 365) -> IssuedCertificate:
        ca = self.ensure(tenant_id)
        key = None
        if csr_pem is not None:
            csr = x509.load_pem_x509_csr(csr_pem)
            if not csr.is_signature_valid:
                raise ValueError("CSR signature is not valid")
            public_key = csr.public_key()
        else:
            key = new_key()
            public_key = key.public_key()
        cert = ca.sign(device_username(tenant_id, device_id), public_key, days=days)
        chain = cert_pem(cert) + cert_pem(ca.cert)
        return IssuedCertificate(chain.decode(), key_pem(key).decode() if key else None, format(cert.serial_number, "x"),
                                 cert.fingerprint(hashes.SHA256()).hex())
