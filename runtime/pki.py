"""The platform's X.509 material: a root CA, per-tenant issuing CAs, broker and service certificates.

Tenant CAs are intermediates under the platform root, so the broker trusts one root while each tenant's
devices chain to their own CA (adr/0003). Keys are written 0600 under the data directory; the control
plane issue puts them behind a secrets interface.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_CA_CN = "fleetstream platform root CA"


def tenant_ca_cn(tenant_id: str) -> str:
    """A tenant CA's CN names its tenant: the broker's access plugin accepts a device certificate only when its
    CN ``<tenant>.<device>`` starts with the tenant its issuer names (adr/0100)."""
    return f"fleetstream tenant {tenant_id} CA"


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def sign(self, subject_cn: str, public_key, *, days: int, ca: bool = False, server: bool = False,
             sans: list[str] | None = None) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
             .issuer_name(self.cert.subject)
             .public_key(public_key)
             .serial_number(x509.random_serial_number())
             .not_valid_before(_now() - dt.timedelta(minutes=5))
             .not_valid_after(_now() + dt.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                            critical=False))
        if ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False,
                                              encipher_only=False, decipher_only=False), critical=True)
        else:
            usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            names = []
            for s in sans:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(s)))
                except ValueError:
                    names.append(x509.DNSName(s))
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(self.key, hashes.SHA256())


def self_signed_ca(cn: str, days: int = 3650) -> Issuer:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issuer(cert, key)


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_issuer(cert_path: Path, key_path: Path) -> Issuer:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    return Issuer(cert, key)  # type: ignore[arg-type]


class PlatformPKI:
    """Files under ``<data_dir>/pki``: ca.crt/ca.key, broker.crt/.key, services/<name>.crt/.key."""

    def __init__(self, pki_dir: Path):
        self.dir = pki_dir

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    def ensure(self, broker_sans: list[str]) -> None:
        if not self.ca_cert.exists():
            root = self_signed_ca(ROOT_CA_CN)
            write_private(self.dir / "ca.key", key_pem(root.key))
            self.ca_cert.write_bytes(cert_pem(root.cert))
        if not (self.dir / "broker.crt").exists():
            self.issue("broker", server=True, sans=broker_sans, into=self.dir)
        for service in ("fleetstream-connector", "fleetstream-admin"):
            if not (self.dir / "services" / f"{service}.crt").exists():
                self.issue(service, into=self.dir / "services")

    def root_cn(self) -> str:
        """The root's CN as issued (data dirs keep their root): platform identities are the ones it signs."""
        return common_name(x509.load_pem_x509_certificate(self.ca_cert.read_bytes()).subject)

    def root(self) -> Issuer:
        return load_issuer(self.ca_cert, self.dir / "ca.key")

    def issue(self, cn: str, *, into: Path, server: bool = False, sans: list[str] | None = None) -> None:
        key = new_key()
        cert = self.root().sign(cn, key.public_key(), days=825, server=server, sans=sans)
        into.mkdir(parents=True, exist_ok=True)
        name = "broker" if server else cn
        write_private(into / f"{name}.key", key_pem(key))
        (into / f"{name}.crt").write_bytes(cert_pem(cert))

    def service_files(self, name: str) -> tuple[str, str]:
        d = self.dir / "services"
        return str(d / f"{name}.crt"), str(d / f"{name}.key")


def tls_context(pki: PlatformPKI, cert: str, key: str) -> ssl.SSLContext:
    """A client TLS context that trusts the platform CA and presents ``cert``/``key`` (mTLS to the broker)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca_cert))
    ctx.load_cert_chain(cert, key)
    return ctx
