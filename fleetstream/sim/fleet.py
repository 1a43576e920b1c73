"""A simulated fleet on disk: one tenant (or several, ``provision_tenants``), N devices each with its own
certificate folder (``fleet.json``).

Devices are provisioned through the control plane's admin operations (registry row, broker role,
certificate from the tenant CA), exactly as a real device would be, so the benchmark also measures
what provisioning costs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetDevice:
    device_id: str
    cert_dir: str
    tenant_id: str = ""  # empty: the fleet's tenant


def spread(n: int, parts: int) -> list[int]:
    """``n`` items over ``parts`` as evenly as possible, the first ``n % parts`` one larger (sums to ``n``)."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    q, r = divmod(n, parts)
    return [q + (i < r) for i in range(parts)]


@dataclass
class Fleet:
    tenant_id: str
    devices: list[FleetDevice]
    extra: dict

    @classmethod
    def load(cls, path: Path) -> Fleet:
        doc = json.loads(Path(path).read_text())
        devices = [FleetDevice(d["device_id"], d["cert_dir"], d.get("tenant_id", "")) for d in doc["devices"]]
        extra = {k: v for k, v in doc.items() if k not in ("tenant_id", "devices")}
        return cls(doc["tenant_id"], devices, extra)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {**self.extra, "tenant_id": self.tenant_id,
               "devices": [{"device_id": d.device_id, "cert_dir": d.cert_dir,
                            **({"tenant_id": d.tenant_id} if d.tenant_id else {})} for d in self.devices]}
        path.write_text(json.dumps(doc, indent=1))
        path.chmod(0o600)  # holds the tenant's client secret

    def tenant_of(self, d: FleetDevice) -> str:
        return d.tenant_id or self.tenant_id

    @property
    def tenant_ids(self) -> list[str]:
        """Every tenant with a device, the fleet's own first."""
        return list(dict.fromkeys([self.tenant_id, *(d.tenant_id for d in self.devices if d.tenant_id)]))


def provision(s: Settings, n: int, *, out_dir: Path, prefix: str = "sim", tenant: dict | None = None,
              chunk: int = 500, progress=None) -> tuple[Fleet, float]:
    """Creates a tenant (unless given) and ``n`` devices; returns the fleet and seconds taken.

    Devices go through the control plane's bulk path (``Admin.create_devices``: registry rows, one broker
    call per chunk, a certificate from the tenant CA per device, adr/0035), as a fleet operator's import
    would; ``chunk`` devices per call."""
    from gateway.admin import Admin

    t0 = time.monotonic()
    admin = Admin(s)
    try:
        tenant = tenant or admin.create_tenant(f"{prefix}-{int(time.time())}")
        tid = tenant["tenant_id"]
        cert_root = out_dir / "devices"
        ids = [f"{prefix}-{i:05d}" for i in range(n)]
        _create(admin, tid, ids, chunk, progress, cert_root=cert_root, device_type=f"{prefix}-device",
                tags=["simulated"])
    finally:
        admin.close()
    extra = {k: v for k, v in tenant.items() if k != "tenant_id"}
    return Fleet(tid, [FleetDevice(d, str(cert_root / d)) for d in ids], extra), time.monotonic() - t0


def register(s: Settings, tenant_id: str | list[str], n: int, *, prefix: str = "reg", chunk: int = 2000,
             progress=None) -> float:
    """Registers ``n`` more devices of ``tenant_id`` (or spread evenly over a list of tenants) that will never
    connect (no certificates issued): the same bulk path as ``provision`` minus the certificate step, so a
    benchmark can have many more devices registered than connected (issue 18: RSS at 100k registered). Returns
    seconds taken."""
    from gateway.admin import Admin

    tenant_ids = [tenant_id] if isinstance(tenant_id, str) else tenant_id
    t0 = time.monotonic()
    admin = Admin(s)
    try:
        start = 0
        for tid, count in zip(tenant_ids, spread(n, len(tenant_ids)), strict=True):
            ids = [f"{prefix}-{i:06d}" for i in range(start, start + count)]
            step = (lambda d, _t, base=start: progress(base + d, n)) if progress else None
            start += count
            if ids:
                _create(admin, tid, ids, chunk, step, device_type=f"{prefix}-device", tags=["registered"])
    finally:
        admin.close()
    return time.monotonic() - t0


def _create(admin, tenant_id: str, ids: list[str], chunk: int, progress, **kw) -> None:
    """``ids`` through ``Admin.create_devices``, ``chunk`` per call; any device not created is an error."""
    for i in range(0, len(ids), chunk):
        results = admin.create_devices(tenant_id, ids[i:i + chunk], **kw)
        failed = [r for r in results if r.get("status") != "created"]
        if failed:
            raise RuntimeError(f"{len(failed)} devices not created, e.g. {failed[0]}")
        if progress:
            progress(min(len(ids), i + chunk), len(ids))


def provision_tenants(s: Settings, n: int, tenants: int, *, out_dir: Path, prefix: str = "sim",
                      chunk: int = 500, progress=None, tenant_progress=None) -> tuple[Fleet, dict]:
    """``tenants`` tenants through ``Admin.create_tenant`` (as an operator would, one by one), then ``n``
    devices spread evenly over them (``spread``), each tenant's devices through the bulk path of ``provision``.
    Device ids are unique across the fleet (``prefix-00000`` …) so the delivery audit can key by device. The
    fleet's ``tenant_id`` and ``extra`` (client credentials) are the first tenant's; every tenant's id is
    ``Fleet.tenant_ids`` (from the devices). Returns the fleet and the seconds taken for tenants and devices apart."""
    from gateway.admin import Admin

    stamp = int(time.time())
    counts = spread(n, tenants)
    cert_root = out_dir / "devices"
    devices: list[FleetDevice] = []
    admin = Admin(s)
    try:
        t0 = time.monotonic()
        made = []
        for i in range(tenants):
            made.append(admin.create_tenant(f"{prefix}-{stamp}-t{i:04d}"))
            if tenant_progress:
                tenant_progress(i + 1, tenants)
        t_tenants = time.monotonic() - t0
        start = 0
        for tenant, count in zip(made, counts, strict=True):
            ids = [f"{prefix}-{j:05d}" for j in range(start, start + count)]
            start += count
            if ids:
                _create(admin, tenant["tenant_id"], ids, chunk, None, cert_root=cert_root,
                        device_type=f"{prefix}-device", tags=["simulated"])
            devices += [FleetDevice(d, str(cert_root / d), tenant["tenant_id"]) for d in ids]
            if progress:
                progress(start, n)
        t_devices = time.monotonic() - t0 - t_tenants
    finally:
        admin.close()
    first = made[0]
    extra = {k: v for k, v in first.items() if k != "tenant_id"}
    return Fleet(first["tenant_id"], devices, extra), {"tenants_s": t_tenants, "devices_s": t_devices}


def provision_or_reuse(s: Settings, n: int, path: Path, prefix: str = "sim") -> Fleet:
    """Reuses ``path`` when it already holds at least ``n`` devices (the stack keeps their registrations)."""
    if path.exists():
        fleet = Fleet.load(path)
        if len(fleet.devices) >= n:
            fleet.devices = fleet.devices[:n]
            return fleet
    fleet, took = provision(s, n, out_dir=path.parent, prefix=prefix,
                            progress=lambda d, t: print(f"\rprovisioned {d}/{t} devices", end="", flush=True))
    print(f"\rprovisioned {n} devices in {took:.1f}s")
    fleet.save(path)
    return fleet
