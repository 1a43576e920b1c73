"""Sub-devices become control-plane devices (adr/0158): a gateway's sub-device (adr/0157) or a Sparkplug
edge node's device (adr/0155) that the MQTT connector saw gets a ``devices`` row under its parent's tenant,
linked to the parent, so the tenant's REST API (commands, shadow, status) knows it.

The connector cannot write Postgres (no control-plane access from connectors); it announces what it saw on
``fleetstream.device-events`` (PROVISIONED/ONLINE/OFFLINE with ``details.gateway`` or ``details.edge_node``).
The status updater reads that topic and calls ``register`` before it applies the batch's connectivity, so
a sub-device's first ONLINE finds its row. Everything is decided in one tenant transaction: the row, its
registry entry and any refusal's dead letter go through the transactional outbox (adr/0108) together, and
the consumer's offsets are committed only after it. A crash replays the batch; rows that exist are skipped.

The tenant comes from the event's key, which the connector built from the topic the broker admitted, never
from a payload. The limits: the parent's attribute ``gateway_max_devices`` (default 100, at most 10,000)
and ``Settings.sub_devices_per_tenant``; both are counted in Postgres under locks (the parent's row, then a
per-tenant advisory lock), so two gateway replicas cannot both take the last place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

from schemas import codec, device_key, topics

from .crud import audit
from .crud import devices as devices_crud
from .outbox import enqueue
from .registry_publisher import enqueue_new_device
from .status_updater import is_uuid

log = logging.getLogger(__name__)

DEFAULT_PER_PARENT = 100
MAX_PER_PARENT = 10_000
TRUE = frozenset({"true", "1", "yes"})
SIGHTINGS = frozenset({"PROVISIONED", "ONLINE", "CONNECTED"})
# Reason codes of the dead letters written here (source "control-plane")
CODES = frozenset({"gateway_device_limit", "tenant_sub_device_limit", "not_a_gateway", "unknown_parent",
                   "parent_not_usable", "not_this_gateways_device"})
SOURCE = "control-plane"
_TENANT_LOCK = 7262003  # pg advisory lock namespace: one sub-device registration per tenant at a time


@dataclass(frozen=True)
class Sighting:
    device_id: str  # <parent>.<name>
    parent: str
    via: str  # gateway | sparkplug
    time: int


def sightings(events: list[dict]) -> dict[str, list[Sighting]]:
    """Per tenant, the sub-devices the connector announced (first sight or online), once each, in order."""
    out: dict[str, dict[str, Sighting]] = {}
    for e in events:
        if e.get("event_type") not in SIGHTINGS:
            continue
        details = e.get("details") or {}
        parent, via = details.get("gateway"), "gateway"
        if not parent:
            parent, via = details.get("edge_node"), "sparkplug"
        device = e.get("device_id") or ""
        if not is_uuid(e.get("tenant_id") or ""):
            continue
        if not parent or not device.startswith(f"{parent}.") or len(device) == len(parent) + 1:
            continue  # the parent itself (an edge node's NBIRTH) or not a sub-device id
        out.setdefault(e["tenant_id"], {}).setdefault(device, Sighting(device, parent, via, e["time"]))
    return {t: list(s.values()) for t, s in out.items()}


def _limit(attrs: dict) -> int:
    try:
        return max(0, min(int(attrs.get("gateway_max_devices", DEFAULT_PER_PARENT)), MAX_PER_PARENT))
    except (TypeError, ValueError):
        return DEFAULT_PER_PARENT


def register(admin, by_tenant: dict[str, list[Sighting]], *, per_tenant: int) -> dict[str, int]:
    """Creates the missing sub-devices of each tenant in one transaction per tenant (rows, registry entries
    and refusals' dead letters through the outbox). Returns counts ``created`` / ``refused``."""
    stats = {"created": 0, "refused": 0}
    for tenant_id, seen in by_tenant.items():
        with admin.db.tenant_tx(tenant_id) as conn:
            if conn.execute("select 1 from tenants where id = %s", (tenant_id,)).fetchone() is None:
                log.warning("sub-devices of unknown tenant %s ignored (deleted?)", tenant_id)
                continue
            existing = {r["device_id"]: r for r in conn.execute(
                "select device_id, attributes from devices where tenant_id = %s and device_id = any(%s)",
                (tenant_id, [s.device_id for s in seen])).fetchall()}
            new = []
            for s in seen:
                row = existing.get(s.device_id)
                if row is None:
                    new.append(s)
                elif (row["attributes"] or {}).get("parent") != s.parent:
                    # the connector refuses these itself; the registry may have lagged behind the tenant
                    _refuse(conn, tenant_id, s, "not_this_gateways_device",
                            f"device {s.device_id!r} exists and is not a sub-device of {s.parent!r}")
                    stats["refused"] += 1
            if not new:
                continue
            conn.execute("select pg_advisory_xact_lock(%s, hashtext(%s))", (_TENANT_LOCK, tenant_id))
            in_tenant = conn.execute("select count(*) as n from devices where tenant_id = %s and attributes ? 'parent' "
                                     "and status <> 'decommissioned'", (tenant_id,)).fetchone()["n"]
            for parent, group in _by_parent(new).items():
                p = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=parent, for_update=True)
                refusal = _parent_refusal(p, parent, group[0].via)
                if refusal is not None:
                    for s in group:
                        _refuse(conn, tenant_id, s, *refusal)
                    stats["refused"] += len(group)
                    continue
                limit = _limit(p["attributes"] or {})
                under = conn.execute("select count(*) as n from devices where tenant_id = %s and "
                                     "attributes->>'parent' = %s and status <> 'decommissioned'",
                                     (tenant_id, parent)).fetchone()["n"]
                for s in group:
                    if under >= limit:
                        _refuse(conn, tenant_id, s, "gateway_device_limit", f"{parent!r} already has {under} "
                                f"sub-devices in the control plane, its limit (attribute gateway_max_devices)")
                    elif in_tenant >= per_tenant:
                        _refuse(conn, tenant_id, s, "tenant_sub_device_limit", f"the tenant already has "
                                f"{in_tenant} sub-devices, the platform's limit per tenant")
                    else:
                        _create(conn, tenant_id, s)
                        under, in_tenant = under + 1, in_tenant + 1
                        stats["created"] += 1
                        continue
                    stats["refused"] += 1
    return stats


def _by_parent(seen: list[Sighting]) -> dict[str, list[Sighting]]:
    out: dict[str, list[Sighting]] = {}
    for s in seen:
        out.setdefault(s.parent, []).append(s)
    return out


def _parent_refusal(row: dict | None, parent: str, via: str) -> tuple[str, str] | None:
    if row is None:
        return "unknown_parent", f"{via} {parent!r} is not a device of this tenant"
    if row["status"] in ("suspended", "decommissioned"):
        return "parent_not_usable", f"{via} {parent!r} is {row['status']}"
    if via == "gateway" and str((row["attributes"] or {}).get("gateway", "")).lower() not in TRUE:
        return "not_a_gateway", f"device {parent!r} may not speak for sub-devices: set its attribute gateway=true"
    return None


def _create(conn: psycopg.Connection, tenant_id: str, s: Sighting) -> None:
    try:
        with conn.transaction():  # a savepoint: a tenant's concurrent REST create of the same id wins
            row = devices_crud.create_device(conn, tenant_id=tenant_id, device_id=s.device_id,
                                             attributes={"parent": s.parent, "via": s.via})
    except psycopg.errors.UniqueViolation:
        return
    audit.record(conn, tenant_id=tenant_id, actor=f"{s.via}:{s.parent}", action="device.create",
                 target=f"device:{s.device_id}", details={"parent": s.parent, "via": s.via, "auto": True})
    enqueue_new_device(conn, row)


def _refuse(conn: psycopg.Connection, tenant_id: str, s: Sighting, code: str, reason: str) -> None:
    """The refusal as a dead letter of the parent (its connection spoke), in this transaction's outbox."""
    log.info("sub-device %s/%s refused: %s", tenant_id, s.device_id, reason)
    rec = {"tenant_id": tenant_id, "device_id": s.parent, "source": SOURCE, "reason_code": code,
           "origin": f"sub-device {s.device_id}", "reason": reason, "time": time.time_ns() // 1_000_000,
           "raw": s.device_id.encode()}
    enqueue(conn, tenant_id=tenant_id, topic=topics.DEAD_LETTER.name, key=device_key(tenant_id, s.parent),
            value=codec("dead_letter").encode(rec))


__all__ = ["CODES", "Sighting", "register", "sightings"]
