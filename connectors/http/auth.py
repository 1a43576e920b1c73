"""Who is sending: a device-signed JWT (``Authorization: Bearer``), or a client certificate that a
TLS-terminating ingress verified and forwarded.

The certificate header (``X-Client-Cert``: the URL-encoded PEM, as nginx's ``$ssl_client_escaped_cert``
and most ingresses send it) is believed only when the request's immediate peer is one of the configured
trusted proxies; from anyone else the header is ignored, because anyone can send a header. Even from a
trusted proxy the certificate is checked again here: issued by the tenant's CA named in its subject, in
its validity period, CN ``<tenant_id>.<device_id>`` (adr/0003), device not suspended (adr/0044)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Callable
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

from runtime.device_jwt import DeviceJwtVerifier, DeviceTokenError

from ..errors import DeviceDisabledError, UnauthenticatedError
from ..registry import ALLOWED_STATUSES

CLIENT_CERT_HEADER = "x-client-cert"

TenantCa = Callable[[str], str | None]  # tenant id → its CA certificate PEM, None if no such tenant
DeviceStatus = Callable[[str, str], str | None]  # (tenant, device) → status, None if unknown


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


class DeviceAuthenticator:
    """:param verifier: device JWT verification (the key ``kid`` of the device ``sub`` of the tenant ``iss``).
    :param tenant_ca: the issuing CA of a tenant, for forwarded certificates.
    :param device_status: the device's lifecycle status, for forwarded certificates.
    :param trusted_proxies: networks (CIDR) whose certificate header is believed; empty: never."""

    def __init__(self, verifier: DeviceJwtVerifier, *, tenant_ca: TenantCa | None = None,
                 device_status: DeviceStatus | None = None, trusted_proxies: list[str] | None = None):
        self.verifier, self.tenant_ca, self.device_status = verifier, tenant_ca, device_status
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in (trusted_proxies or [])]

    def authenticate(self, authorization: str | None, client_cert: str | None, peer: str | None) -> tuple[str, str]:
        """(tenant_id, device_id) or raises ``UnauthenticatedError``/``DeviceDisabledError``."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise UnauthenticatedError("Authorization must be 'Bearer <device JWT>'")
            try:
                ident = self.verifier.verify(token.strip())
            except DeviceTokenError as exc:
                if exc.code == "device_inactive":
                    raise DeviceDisabledError(str(exc)) from exc
                err = UnauthenticatedError(f"{exc.code}: {exc}")
                raise err from exc
            return ident.tenant_id, ident.device_id
        if client_cert and self._from_trusted_proxy(peer):
            return self._from_certificate(client_cert)
        raise UnauthenticatedError("a device JWT (Authorization: Bearer) or a client certificate is required")

    def _from_trusted_proxy(self, peer: str | None) -> bool:
        if not peer or not self.trusted:
            return False
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def _from_certificate(self, header: str) -> tuple[str, str]:
        try:
            cert = x509.load_pem_x509_certificate(unquote(header).encode())
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        except (ValueError, IndexError) as exc:
            raise UnauthenticatedError("the forwarded client certificate is not a PEM certificate") from exc
        tenant_id, sep, device_id = str(cn).partition(".")
        if not sep or not device_id or not _is_uuid(tenant_id):
            raise UnauthenticatedError("certificate CN must be <tenant_id>.<device_id>")
        # the device must exist before anything is done with its tenant's CA (no CA is ever made for a
        # tenant named by an unverified certificate)
        status = self.device_status(tenant_id, device_id) if self.device_status else None
        if status is None:
            raise UnauthenticatedError("certificate is not accepted")
        ca_pem = self.tenant_ca(tenant_id) if self.tenant_ca else None
        if ca_pem is None:
            raise UnauthenticatedError("certificate names an unknown tenant")
        try:
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
        except Exception as exc:  # InvalidSignature, ValueError, TypeError: all mean 'not its CA'
            raise UnauthenticatedError("certificate is not issued by its tenant's CA") from exc
        if status not in ALLOWED_STATUSES:
            raise DeviceDisabledError(f"device {device_id!r} is {status}")
        now = dt.datetime.now(dt.UTC)
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise UnauthenticatedError("certificate is outside its validity period")
        return tenant_id, device_id
