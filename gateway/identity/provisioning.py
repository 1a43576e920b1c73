"""Fleet provisioning: devices registering themselves with a claim token, and bulk import from CSV.

Both paths end where ``Admin.create_device`` ends (row, broker authorisation, registry entry); they
batch the broker and registry work so thousands of devices do not cost thousands of round trips.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import psycopg

from gateway.crud import audit
from gateway.crud import claim_tokens as claims_crud
from gateway.crud import credentials as creds_crud
from gateway.crud import devices as devices_crud
from gateway.errors import ApiError
from gateway.identity.certificates import CertificateRequestError
from gateway.registry_publisher import enqueue_new_device, enqueue_new_devices

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_IMPORT_ROWS = 10_000

CLAIM_REFUSALS = {
    "invalid": (401, "invalid_claim_token", "unknown or revoked claim token"),
    "expired": (401, "claim_token_expired", "the claim token has expired"),
    "exhausted": (403, "claim_token_exhausted", "the claim token has no uses left"),
}


@dataclass(frozen=True)
class Provisioned:
    tenant_id: str
    device_id: str
    certificate_pem: str
    serial: str


def provision_with_claim(admin, *, claim_token: str, device_id: str, csr_pem: bytes) -> Provisioned:
    """One transaction spends a use of the token, creates the device and records its certificate; any
    failure rolls the use back. The tenant comes from the token, never from the request."""
    if not DEVICE_ID.match(device_id):
        raise ApiError(422, "invalid_device_id", "device ids are 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
    with admin.db.anonymous_tx() as conn:
        use = claims_crud.use(conn, claim_token)
        if use["outcome"] != "ok":
            raise ApiError(*CLAIM_REFUSALS[use["outcome"]])
        tenant_id = str(use["tenant_id"])
        conn.execute("select set_config('app.tenant_id', %s, true)", (tenant_id,))
        try:
            with conn.transaction():
                row = devices_crud.create_device(conn, tenant_id=tenant_id, device_id=device_id,
                                                 device_type=use["device_type"], tags=list(use["tags"] or []))
        except psycopg.errors.UniqueViolation as exc:
            raise ApiError(409, "device_exists", f"device {device_id!r} is already registered") from exc
        try:
            issued = admin.cas.issue_for_device(tenant_id, device_id, csr_pem=csr_pem)
        except CertificateRequestError as exc:
            raise ApiError(422, "invalid_csr", str(exc)) from exc
        creds_crud.add_certificate(conn, tenant_id=tenant_id, device_id=device_id, serial=issued.serial,
                                   fingerprint=issued.fingerprint_sha256, not_after=issued.not_after)
        audit.record(conn, tenant_id=tenant_id, actor="claim-token", action="device.claim",
                     target=f"device:{device_id}", details={"serial": issued.serial})
        admin._broker(admin.dynsec.authorise_device, tenant_id, device_id)
        published = enqueue_new_device(conn, row)
    admin.outbox.wait([published])
    return Provisioned(tenant_id, device_id, issued.certificate_pem, issued.serial)


def parse_csv(text: str) -> list[dict]:
    """Rows of ``device_id[,device_type][,tags][,attributes]``; tags ``;``-separated, attributes a JSON object."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "device_id" not in [f.strip() for f in reader.fieldnames]:
        raise ApiError(422, "invalid_csv", "the first line must be a header naming at least device_id")
    rows = []
    for n, raw in enumerate(reader, start=2):
        if n - 1 > MAX_IMPORT_ROWS:
            raise ApiError(413, "too_many_rows", f"at most {MAX_IMPORT_ROWS} devices per import")
        rows.append({"line": n, **{(k or "").strip(): (v or "").strip() for k, v in raw.items()}})
    return rows


def import_devices(admin, tenant_id: str, rows: list[dict], *, actor: str, authorise=None) -> list[dict]:
    """Creates each valid, new CSV row's device; one bad row never costs the good ones. One result per row."""
    items = []
    for r in rows:
        try:
            items.append(({"line": r["line"], "device_id": r.get("device_id", "")}, _row_fields(r)))
        except ValueError as exc:
            items.append(({"line": r["line"], "device_id": r.get("device_id", ""), "status": "error",
                           "code": "invalid_row", "message": str(exc)}, None))
    return create_devices(admin, tenant_id, items, actor=actor, authorise=authorise)


def create_devices(admin, tenant_id: str, items: list[tuple[dict, dict | None]], *, actor: str,
                   authorise=None) -> list[dict]:
    """The bulk path (CSV import and ``POST /v1/devices/bulk``): rows in one transaction (a taken id is skipped
    by the insert itself, so no savepoint per row; rows and entries each one pipelined batch, adr/0171) and their
    registry entries in the same transaction's outbox (adr/0108), then every new device authorised on the broker
    in one call (gateway/broker/dynsec.py); a broker refusal deletes them again (their tombstones follow the entries).

    :param items: ``(result, fields)`` per device; ``fields`` None means the result already says why not.
    :param authorise: the broker step, ``(tenant_id, device_ids)``; default the live broker. A fleet
        bootstrap passes one that collects entries for ``seed_dynsec`` (adr/0035)."""
    results = [res for res, _ in items]
    wanted = [(res, fields) for res, fields in items if fields is not None]
    with admin.db.tenant_tx(tenant_id) as conn:
        rows = devices_crud.insert_new_devices(conn, tenant_id=tenant_id, devices=[f for _, f in wanted])
        created = [row for row in rows if row is not None]
        for (res, _), row in zip(wanted, rows, strict=True):
            if row is None:
                res.update(status="error", code="device_exists", message="device already exists")
            else:
                res["status"] = "created"
        published = enqueue_new_devices(conn, tenant_id, created)
        if created:
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="device.import", target="devices",
                         details={"created": len(created), "rows": len(items)})
    if created:
        ids = [d["device_id"] for d in created]
        try:
            admin._broker(authorise or admin.dynsec.authorise_devices, tenant_id, ids)
        except ApiError:
            with admin.db.tenant_tx(tenant_id) as conn:
                conn.execute("delete from devices where tenant_id = %s and device_id = any(%s)", (tenant_id, ids))
                for device_id in ids:
                    admin.enqueue_entry(conn, tenant_id, device_id)
            raise
        admin.outbox.wait(published, timeout=max(admin.outbox.wait_s, len(published) / 500))
    return results


def issue_certificates(admin, tenant_id: str, device_ids: list[str], *, actor: str, days: int = 365) -> dict:
    """A generated key pair and certificate for each device, recorded in one transaction with one audit
    entry (the one-by-one path costs a transaction and an audit row per device). ``{device_id: issued}``."""
    out = {}
    with admin.db.tenant_tx(tenant_id) as conn:
        for device_id in device_ids:
            out[device_id] = admin.cas.issue_for_device(tenant_id, device_id, days=days)
        creds_crud.add_certificates(conn, tenant_id=tenant_id, issued=[
            (d, i.serial, i.fingerprint_sha256, i.not_after) for d, i in out.items()])
        if out:
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="certificate.issue", target="devices",
                         details={"devices": len(out), "generated_key": True})
    return out


def _row_fields(r: dict) -> dict:
    device_id = r.get("device_id", "")
    if not DEVICE_ID.match(device_id):
        raise ValueError("device_id must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
    attrs = {}
    if r.get("attributes"):
        try:
            attrs = json.loads(r["attributes"])
        except ValueError as exc:
            raise ValueError("attributes must be a JSON object") from exc
        if not isinstance(attrs, dict):
            raise ValueError("attributes must be a JSON object")
    tags = [t.strip() for t in r.get("tags", "").split(";") if t.strip()]
    fields = {"device_id": device_id, "device_type": r.get("device_type") or None, "tags": tags, "attributes": attrs}
    from pydantic import ValidationError

    from gateway.models.devices import DeviceCreate

    try:  # the same rules as POST /v1/devices: no NUL, finite numbers, bounded attributes (adr/0109)
        DeviceCreate.model_validate(fields)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    return fields


def record_connectivity(admin, changes_by_tenant: dict[str, list[tuple[str, bool, object]]]) -> int:
    """Status updater's write: one statement per tenant; registry entries for devices that became active."""
    activated = 0
    for tenant_id, changes in changes_by_tenant.items():
        with admin.db.tenant_tx(tenant_id) as conn:
            for row in devices_crud.record_connectivity(conn, tenant_id=tenant_id, changes=changes):
                audit.record(conn, tenant_id=tenant_id, actor="status-updater", action="device.activate",
                             target=f"device:{row['device_id']}")
                admin.enqueue_entry(conn, tenant_id, row["device_id"])
                activated += 1
    return activated


__all__ = ["provision_with_claim", "parse_csv", "import_devices", "create_devices", "issue_certificates",
           "record_connectivity", "CLAIM_REFUSALS"]
