"""The control plane's operations, shared by the REST routes and the ``fleetstream admin`` CLI.

Each device change touches Postgres (the truth), the broker (who may connect) and the registry topic
(what agents and connectors know). The registry entry is written to the transactional outbox in the same
transaction as the change (adr/0108), so Kafka is told exactly what Postgres committed, even if this process
dies right after the commit; operations answer once the entry is on Kafka (``Outbox.wait``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from runtime.pki import PlatformPKI, tls_context, write_private
from runtime.settings import Settings

from .broker.access import BrokerAccess
from .broker.dynsec import BrokerAuthError, DynSecAdmin
from .broker.emqx import EmqxAdmin
from .crud import audit, device_types
from .crud import credentials as creds_crud
from .crud import devices as devices_crud
from .crud import tenants as tenants_crud
from .db.session import Database
from .errors import ApiError, not_found
from .identity.certificates import CertificateRequestError, IssuedCertificate, TenantCAs
from .identity.secrets import keystore_from_settings
from .outbox import Outbox
from .registry_publisher import enqueue_device, enqueue_new_device, enqueue_tenant


def emqx_admin(s: Settings) -> EmqxAdmin:
    if not (s.emqx_api_url and s.emqx_api_key and s.emqx_api_secret):
        raise ApiError(503, "broker_unavailable", "FLEETSTREAM_MQTT_BROKER=emqx needs FLEETSTREAM_EMQX_API_URL, "
                       "FLEETSTREAM_EMQX_API_KEY and FLEETSTREAM_EMQX_API_SECRET")
    return EmqxAdmin(s.emqx_api_url, s.emqx_api_key, s.emqx_api_secret)


class Admin:
    """:param s: settings. :param db: an open application-role pool (the CLI opens its own).
    :param outbox: the process's outbox (its relay publishes; created on first use when not given, so the
        CLI publishes what it changed even when no gateway runs)."""

    def __init__(self, s: Settings, db: Database | None = None, outbox: Outbox | None = None):
        self.s = s
        self.pki = PlatformPKI(s.pki_dir)
        self.cas = TenantCAs(self.pki, keystore_from_settings(s))
        self._db, self._own_db = db, db is None
        self._outbox, self._own_outbox = outbox, outbox is None
        self._dynsec: DynSecAdmin | None = None
        self._lazy = threading.Lock()

    # -- collaborators, opened on first use --------------------------------------------------------------
    @property
    def db(self) -> Database:
        with self._lazy:
            if self._db is None:
                self._db = Database(self.s.app_dsn, max_size=4)
                self._db.open()
            return self._db

    @property
    def outbox(self) -> Outbox:
        db = self.db
        with self._lazy:
            if self._outbox is None:
                self._outbox = Outbox(db, self.s.app_dsn, self.s.kafka, wait_s=self.s.outbox_wait_s).start()
            return self._outbox

    @property
    def dynsec(self) -> DynSecAdmin | EmqxAdmin:
        with self._lazy:
            if self._dynsec is None and self.s.mqtt_broker == "emqx":
                self._dynsec = emqx_admin(self.s)
            if self._dynsec is None:
                tls = tls_context(self.pki, *self.pki.service_files("fleetstream-admin"))
                self._dynsec = DynSecAdmin(self.s.mqtt_broker_host, self.s.mqtt_tls_port, tls)
            return self._dynsec

    @property
    def access(self) -> BrokerAccess | EmqxAdmin:
        """Who may connect at all (revoked serials, suspended devices and tenants), adr/0100; EMQX, adr/0139."""
        broker = self.dynsec
        return broker if isinstance(broker, EmqxAdmin) else BrokerAccess(broker)

    def close(self) -> None:
        if self._dynsec is not None:
            self._dynsec.close()
        if self._outbox is not None and self._own_outbox:
            self._outbox.close()
        if self._db is not None and self._own_db:
            self._db.close()

    @contextmanager
    def platform_tx(self) -> Iterator[psycopg.Connection]:
        """A transaction that may see and change tenants (never their devices): platform tokens only."""
        with self.db.anonymous_tx() as conn:
            conn.execute("select set_config('app.platform_admin', 'on', true)")
            yield conn

    def _broker(self, fn, *args) -> None:
        try:
            fn(*args)
        except (BrokerAuthError, OSError) as exc:
            raise ApiError(503, "broker_unavailable", f"the MQTT broker did not confirm the change: {exc}") from exc

    # -- tenants ------------------------------------------------------------------------------------------
    def create_tenant(self, name: str) -> dict:
        with self.db.pool.connection() as conn, conn.transaction():
            try:
                out = tenants_crud.create_tenant(conn, name=name)
            except psycopg.errors.UniqueViolation as exc:
                raise ApiError(409, "tenant_exists", f"a tenant named {name!r} exists") from exc
            published = enqueue_tenant(conn, tenants_crud.get_tenant(conn, tenant_id=out["tenant_id"]))
        self.cas.ensure(out["tenant_id"])
        self.outbox.wait([published])
        return out

    def update_tenant(self, tenant_id: str, *, name: str | None = None, status: str | None = None,
                      actor: str = "platform") -> dict | None:
        """Rename, suspend (``suspended``), reactivate (``active``) or delete (``deleted``) a tenant. Every
        gateway refuses a non-active tenant's tokens at once (adr/0107) and the stream agents its devices'
        data, from the tenant entry on ``fleetstream.tenants``. None if there is no such tenant."""
        with self.platform_tx() as conn:
            before = tenants_crud.get_tenant(conn, tenant_id=tenant_id)
            if before is None:
                return None
            row = tenants_crud.update_tenant(conn, tenant_id=tenant_id, name=name, status=status)
            published = enqueue_tenant(conn, row)
            if row["status"] != before["status"]:
                audit.record(conn, tenant_id=tenant_id, actor=actor, action=f"tenant.{row['status']}",
                             target=f"tenant:{tenant_id}", details={"from": before["status"], "to": row["status"]})
                self._tenant_status_on_broker(tenant_id, row["status"])
        self.outbox.wait([published])
        return row

    def _tenant_status_on_broker(self, tenant_id: str, status: str) -> None:
        """The broker follows a tenant's status, inside the transaction that changes it (a broker refusal rolls
        the change back): suspended or deleted -> every device of the tenant refused at CONNECT and cut off
        (adr/0100); active -> allowed again."""
        if status in ("suspended", "deleted"):
            self._broker(self.access.suspend_tenant, tenant_id)
        elif status == "active":
            self._broker(self.access.resume_tenant, tenant_id)

    def reconcile_broker_access(self) -> dict[str, int]:
        """Denies at the broker every identity Postgres says is cut off: non-active tenants, suspended and
        decommissioned devices, revoked certificates. Idempotent; run at gateway start, because the broker's own
        deny list covers only changes made since the access plugin arrived and is lost with the broker's disk.
        Stale denials are not lifted here (a resume lifts its own), so this only ever refuses more.
        Provisioned and active devices are registered in the plugin's known set again (adr/0171): a broker that
        lost its directory knows its fleet again (already known ones cost a hash lookup, no journal line)."""
        if not self.dynsec.access_available:
            return {}
        counts = {"tenants": 0, "devices": 0, "certificates": 0, "registered": 0}
        registers = isinstance(self.dynsec, DynSecAdmin)
        after = None
        while True:
            with self.platform_tx() as conn:
                page = tenants_crud.list_tenants(conn, limit=500, after=after)
            if not page:
                return counts
            after = str(page[-1]["id"])
            for tenant in page:
                tid = str(tenant["id"])
                if tenant["status"] != "active":
                    self.access.suspend_tenant(tid)
                    counts["tenants"] += 1
                with self.db.tenant_tx(tid) as conn:
                    cut = conn.execute("select device_id from devices where tenant_id = %s and status in "
                                       "('suspended', 'decommissioned')", (tid,)).fetchall()
                    serials = [serial for serial, _ in creds_crud.revoked_serials(conn, tenant_id=tid)]
                    usable = conn.execute("select device_id from devices where tenant_id = %s and status in "
                                          "('provisioned', 'active')", (tid,)).fetchall() if registers else []
                for row in cut:
                    self.access.suspend_device(tid, row["device_id"])
                counts["devices"] += len(cut)
                counts["certificates"] += len(serials)
                self.access.revoke_certificates(serials)
                if usable and tenant["status"] == "active":
                    self.dynsec.authorise_devices(tid, [row["device_id"] for row in usable])
                    counts["registered"] += len(usable)

    # -- devices ------------------------------------------------------------------------------------------
    def enqueue_entry(self, conn: psycopg.Connection, tenant_id: str, device_id: str) -> int | None:
        """The device's registry entry into the outbox of this transaction (see ``registry_publisher``)."""
        return enqueue_device(conn, str(tenant_id), device_id)

    def create_device(self, tenant_id: str, device_id: str, *, cert_dir: Path | None = None,
                      device_type: str | None = None, tags: list[str] | None = None,
                      attributes: dict | None = None, actor: str = "cli") -> dict:
        """Registers the device, authorises it on the broker and (with cert_dir) issues its certificate."""
        with self.db.tenant_tx(tenant_id) as conn:
            tags, attributes = device_types.apply_profile(conn, tenant_id=tenant_id, device_type=device_type,
                                                          tags=tags, attributes=attributes)
            try:
                row = devices_crud.create_device(conn, tenant_id=tenant_id, device_id=device_id,
                                                 device_type=device_type, tags=tags, attributes=attributes)
            except psycopg.errors.UniqueViolation as exc:
                raise ApiError(409, "device_exists", f"device {device_id!r} already exists") from exc
            except psycopg.errors.CheckViolation as exc:
                raise ApiError(422, "invalid_device_id",
                               "device ids are 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit") from exc
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="device.create", target=f"device:{device_id}")
            published = [enqueue_new_device(conn, row)]
        try:
            self._broker(self.dynsec.authorise_device, tenant_id, device_id)
        except ApiError:
            with self.db.tenant_tx(tenant_id) as conn:  # not usable without the broker: undo, let the caller retry
                conn.execute("delete from devices where tenant_id = %s and device_id = %s", (tenant_id, device_id))
                self.enqueue_entry(conn, tenant_id, device_id)  # its tombstone follows the entry
            raise
        self.outbox.wait(published)
        out = {"tenant_id": tenant_id, "device_id": row["device_id"], "status": row["status"]}
        if cert_dir is not None:
            issued = self.issue_certificate(tenant_id, device_id, actor=actor)
            cert_dir.mkdir(parents=True, exist_ok=True)
            (cert_dir / "device.crt").write_text(issued.certificate_pem)
            write_private(cert_dir / "device.key", issued.private_key_pem.encode())
            (cert_dir / "ca.crt").write_bytes(self.pki.ca_cert.read_bytes())
            out.update(cert=str(cert_dir / "device.crt"), key=str(cert_dir / "device.key"),
                       ca=str(cert_dir / "ca.crt"), serial=issued.serial)
        return out

    def create_devices(self, tenant_id: str, device_ids: list[str], *, cert_root: Path | None = None,
                       device_type: str | None = None, tags: list[str] | None = None, actor: str = "cli") -> list[dict]:
        """``create_device`` for a fleet: one bulk call (rows, one broker call, registry) and, with cert_root,
        ``cert_root/<device>/{device.crt,device.key,ca.crt}`` per device (adr/0035). Existing ids are skipped
        and reported with ``status`` "error"."""
        from .identity.provisioning import create_devices, issue_certificates

        items = [({"device_id": d}, {"device_id": d, "device_type": device_type, "tags": tags or [], "attributes": {}})
                 for d in device_ids]
        results = create_devices(self, tenant_id, items, actor=actor)
        by_id = {r["device_id"]: r for r in results if r.get("status") == "created"}
        new = list(by_id)
        if cert_root is not None and new:
            ca = self.pki.ca_cert.read_bytes()
            for device_id, issued in issue_certificates(self, tenant_id, new, actor=actor).items():
                d = cert_root / device_id
                d.mkdir(parents=True, exist_ok=True)
                (d / "device.crt").write_text(issued.certificate_pem)
                write_private(d / "device.key", issued.private_key_pem.encode())
                (d / "ca.crt").write_bytes(ca)
                by_id[device_id].update(
                    cert=str(d / "device.crt"), key=str(d / "device.key"), ca=str(d / "ca.crt"), serial=issued.serial)
        return results

    def update_device(self, tenant_id: str, device_id: str, *, actor: str, **changes) -> dict:
        with self.db.tenant_tx(tenant_id) as conn:
            row = devices_crud.update_device(conn, tenant_id=tenant_id, device_id=device_id, **changes)
            if row is None:
                raise not_found(f"device {device_id!r}")
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="device.update", target=f"device:{device_id}",
                         details={k: v for k, v in changes.items() if v is not None})
            published = self.enqueue_entry(conn, tenant_id, device_id)
        self.outbox.wait([published])
        return row

    def change_status(self, tenant_id: str, device_id: str, action: str, *, actor: str) -> dict:
        """``suspend`` | ``resume`` | ``decommission``: Postgres, then the broker, then the registry."""
        with self.db.tenant_tx(tenant_id) as conn:
            row = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=device_id, for_update=True)
            if row is None:
                raise not_found(f"device {device_id!r}")
            current = row["status"]
            if current == "decommissioned":
                raise ApiError(409, "device_decommissioned", "a decommissioned device cannot change state")
            if action == "suspend":
                target = "suspended"
            elif action == "resume":
                if current != "suspended":
                    raise ApiError(409, "device_not_suspended", f"only a suspended device resumes (it is {current})")
                target = "active" if row["last_connected_at"] else "provisioned"
            else:
                target = "decommissioned"
                n_certs, n_keys = creds_crud.revoke_all(conn, tenant_id=tenant_id, device_id=device_id)
            row = devices_crud.set_status(conn, tenant_id=tenant_id, device_id=device_id, status=target)
            details = {"from": current, "to": target}
            if action == "decommission":
                details.update(certificates_revoked=n_certs, keys_revoked=n_keys)
            audit.record(conn, tenant_id=tenant_id, actor=actor, action=f"device.{action}",
                         target=f"device:{device_id}", details=details)
            # The broker change happens inside the transaction: if the broker refuses, the status stays.
            if target in ("suspended", "decommissioned"):
                self._broker(self.access.suspend_device, tenant_id, device_id)  # refused at CONNECT, cut off
                self._broker(self.dynsec.revoke_device, tenant_id, device_id)
            else:
                self._broker(self.dynsec.enable_device, tenant_id, device_id)
                self._broker(self.access.resume_device, tenant_id, device_id)
            published = self.enqueue_entry(conn, tenant_id, device_id)
        self.outbox.wait([published])
        return row

    # -- credentials --------------------------------------------------------------------------------------
    def _usable_device(self, conn: psycopg.Connection, tenant_id: str, device_id: str, *,
                       for_update: bool = False) -> dict:
        row = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=device_id, for_update=for_update)
        if row is None:
            raise not_found(f"device {device_id!r}")
        if row["status"] == "decommissioned":
            raise ApiError(409, "device_decommissioned", "a decommissioned device gets no new credentials")
        return row

    def issue_certificate(self, tenant_id: str, device_id: str, *, csr_pem: bytes | None = None, days: int = 365,
                          actor: str) -> IssuedCertificate:
        with self.db.tenant_tx(tenant_id) as conn:
            self._usable_device(conn, tenant_id, device_id)
            try:
                issued = self.cas.issue_for_device(tenant_id, device_id, csr_pem=csr_pem, days=days)
            except CertificateRequestError as exc:
                raise ApiError(422, "invalid_csr", str(exc)) from exc
            creds_crud.add_certificate(conn, tenant_id=tenant_id, device_id=device_id, serial=issued.serial,
                                       fingerprint=issued.fingerprint_sha256, not_after=issued.not_after)
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="certificate.issue",
                         target=f"device:{device_id}", details={"serial": issued.serial,
                                                                 "generated_key": csr_pem is None})
        return issued

    def revoke_certificate(self, tenant_id: str, device_id: str, serial: str, *, actor: str) -> dict:
        with self.db.tenant_tx(tenant_id) as conn:
            row = creds_crud.revoke_certificate(conn, tenant_id=tenant_id, device_id=device_id, serial=serial)
            if row is None:
                raise not_found(f"certificate {serial!r}")
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="certificate.revoke",
                         target=f"device:{device_id}", details={"serial": serial})
            # this certificate only: refused at CONNECT and its sessions closed, the device's others keep working
            self._broker(self.access.revoke_certificates, [row["serial"]])
            still_valid = [c for c in creds_crud.list_certificates(conn, tenant_id=tenant_id, device_id=device_id)
                           if c["status"] == "active"]
            if not still_valid:
                self._broker(self.dynsec.revoke_device, tenant_id, device_id)
        return row

    def crl_der(self, tenant_id: str) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        with self.db.tenant_tx(tenant_id) as conn:
            revoked = creds_crud.revoked_serials(conn, tenant_id=tenant_id)
        return self.cas.crl(tenant_id, revoked).public_bytes(Encoding.DER)

    def add_jwt_key(self, tenant_id: str, device_id: str, public_key_pem: str, *, proof: str, actor: str) -> dict:
        """Registers a device's ES256 key. ``proof``: a JWT the key's private half signed for this tenant and
        device (``runtime.device_jwt.sign_key_proof``), so no one registers a key they do not hold (adr/0106)."""
        from runtime.device_jwt import DeviceTokenError, key_id, verify_key_proof

        with self.db.tenant_tx(tenant_id) as conn:
            self._usable_device(conn, tenant_id, device_id, for_update=True)
            try:
                kid = key_id(public_key_pem)
            except ValueError as exc:
                raise ApiError(422, "invalid_public_key", str(exc)) from exc
            try:
                verify_key_proof(proof, public_key_pem, str(tenant_id), device_id)
            except DeviceTokenError as exc:
                raise ApiError(422, "invalid_key_proof", f"{exc.code}: {exc}") from exc
            try:
                with conn.transaction():
                    row = creds_crud.add_key(conn, tenant_id=tenant_id, device_id=device_id, key_id=kid,
                                             public_key_pem=public_key_pem.strip() + "\n")
            except psycopg.errors.UniqueViolation as exc:
                raise ApiError(409, "key_exists", "this device already has (or had) this key") from exc
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="key.add", target=f"device:{device_id}",
                         details={"key_id": kid})
            published = self.enqueue_entry(conn, tenant_id, device_id)
        self.outbox.wait([published])
        return row

    def revoke_jwt_key(self, tenant_id: str, device_id: str, kid: str, *, actor: str) -> dict:
        with self.db.tenant_tx(tenant_id) as conn:
            row = creds_crud.revoke_key(conn, tenant_id=tenant_id, device_id=device_id, key_id=kid)
            if row is None:
                raise not_found(f"key {kid!r}")
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="key.revoke", target=f"device:{device_id}",
                         details={"key_id": kid})
            published = self.enqueue_entry(conn, tenant_id, device_id)
        self.outbox.wait([published])
        return row
