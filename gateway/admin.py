"""Platform-admin operations used by the CLI and the local stack (the REST admin API builds on these)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from fleetstream.settings import Settings
from fleetstream.stack.mosquitto import tls_context
from fleetstream.stack.pki import PlatformPKI, write_private

from .broker.dynsec import DynSecAdmin
from .crud import devices as devices_crud
from .crud import tenants as tenants_crud
from .identity.certificates import TenantCAs


class Admin:
    def __init__(self, s: Settings):
        self.s = s
        self.pki = PlatformPKI(s.pki_dir)
        self.cas = TenantCAs(self.pki)
        self._dynsec: DynSecAdmin | None = None

    @property
    def dynsec(self) -> DynSecAdmin:
        if self._dynsec is None:
            tls = tls_context(self.pki, *self.pki.service_files("fleetstream-admin"))
            self._dynsec = DynSecAdmin(self.s.mqtt_broker_host, self.s.mqtt_tls_port, tls)
        return self._dynsec

    def close(self) -> None:
        if self._dynsec is not None:
            self._dynsec.close()

    def create_tenant(self, name: str) -> dict:
        with psycopg.connect(self.s.owner_dsn, row_factory=dict_row) as conn:
            out = tenants_crud.create_tenant(conn, name=name)
        self.cas.ensure(out["tenant_id"])
        return out

    def create_device(self, tenant_id: str, device_id: str, *, cert_dir: Path | None = None,
                      device_type: str | None = None, tags: list[str] | None = None) -> dict:
        """Registers the device, authorises it on the broker and (with cert_dir) issues its certificate."""
        with psycopg.connect(self.s.app_dsn, row_factory=dict_row) as conn, conn.transaction():
            conn.execute("select set_config('app.tenant_id', %s, true)", (tenant_id,))
            row = devices_crud.create_device(conn, tenant_id=tenant_id, device_id=device_id,
                                             device_type=device_type, tags=tags)
        self.dynsec.authorise_device(tenant_id, device_id)
        out = {"tenant_id": tenant_id, "device_id": row["device_id"], "status": row["status"]}
        if cert_dir is not None:
            issued = self.cas.issue_for_device(tenant_id, device_id)
            cert_dir.mkdir(parents=True, exist_ok=True)
            (cert_dir / "device.crt").write_text(issued.certificate_pem)
            write_private(cert_dir / "device.key", issued.private_key_pem.encode())
            (cert_dir / "ca.crt").write_bytes(self.pki.ca_cert.read_bytes())
            out.update(cert=str(cert_dir / "device.crt"), key=str(cert_dir / "device.key"),
                       ca=str(cert_dir / "ca.crt"), serial=issued.serial)
        return out
