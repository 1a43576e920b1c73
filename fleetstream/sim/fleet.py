"""A simulated fleet on disk: one tenant, N devices each with its own certificate folder (``fleet.json``).

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


@dataclass
class Fleet:
    tenant_id: str
    devices: list[FleetDevice]
    extra: dict

    @classmethod
    def load(cls, path: Path) -> Fleet:
        doc = json.loads(Path(path).read_text())
        devices = [FleetDevice(d["device_id"], d["cert_dir"]) for d in doc["devices"]]
        extra = {k: v for k, v in doc.items() if k not in ("tenant_id", "devices")}
        return cls(doc["tenant_id"], devices, extra)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {**self.extra, "tenant_id": self.tenant_id,
               "devices": [{"device_id": d.device_id, "cert_dir": d.cert_dir} for d in self.devices]}
        path.write_text(json.dumps(doc, indent=1))
        path.chmod(0o600)  # holds the tenant's client secret


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


def register(s: Settings, tenant_id: str, n: int, *, prefix: str = "reg", chunk: int = 2000,
             progress=None) -> float:
    """Registers ``n`` more devices of ``tenant_id`` that will never connect (no certificates issued): the same
    bulk path as ``provision`` minus the certificate step, so a benchmark can have many more devices registered
    than connected (issue 18: RSS at 100k registered). Returns seconds taken."""
    from gateway.admin import Admin

    t0 = time.monotonic()
    admin = Admin(s)
    try:
        _create(admin, tenant_id, [f"{prefix}-{i:06d}" for i in range(n)], chunk, progress,
                device_type=f"{prefix}-device", tags=["registered"])
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
