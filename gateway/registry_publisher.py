"""The control plane's view of each device (compacted ``fleetstream.registry``, key ``tenant:device``) and of
each tenant (compacted ``fleetstream.tenants``, key ``tenant``), so stream agents and connectors enrich and
enforce without calling Postgres.

Every change writes the whole current entry (never a delta) to the transactional outbox in the same
transaction as the change (adr/0108): compaction keeps the latest per key, a consumer that starts from the
beginning has the full registry, and an entry reaches Kafka exactly when its change commits.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import psycopg

from schemas import codec, device_key, topics

from .crud import devices as devices_crud
from .outbox import enqueue, enqueue_many


def registry_entry(device: dict, jwt_public_keys: list[str]) -> dict[str, Any]:
    """A ``RegistryEntry`` record from a ``devices`` row (attributes become strings: JSON for non-strings)."""
    attrs = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (device.get("attributes") or {}).items()}
    return {"tenant_id": str(device["tenant_id"]), "device_id": device["device_id"], "status": device["status"],
            "device_type": device.get("device_type"), "tags": list(device.get("tags") or []), "attributes": attrs,
            "jwt_public_keys": list(jwt_public_keys), "version": int(device.get("version") or 0),
            "time": _ms(device.get("updated_at"))}


def tenant_entry(tenant: dict) -> dict[str, Any]:
    """A ``TenantEntry`` from a ``tenants`` row: its status and whether it exports its telemetry (adr/0146)."""
    return {"tenant_id": str(tenant["id"]), "status": tenant["status"], "time": time.time_ns() // 1_000_000,
            "export_telemetry": bool(tenant.get("export_telemetry", False))}


def _ms(t: dt.datetime | None) -> int:
    return int(t.timestamp() * 1000) if t else time.time_ns() // 1_000_000


def enqueue_device(conn: psycopg.Connection, tenant_id: str, device_id: str) -> int | None:
    """The device's current entry, read under its row lock so that concurrent changes of one device enqueue
    in commit order (adr/0108); a tombstone if the row is gone. Returns the outbox id."""
    row = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=device_id, for_update=True)
    key = device_key(tenant_id, device_id)
    if row is None:
        return enqueue(conn, tenant_id=tenant_id, topic=topics.REGISTRY.name, key=key, value=None)
    keys = devices_crud.active_jwt_keys(conn, tenant_id=tenant_id, device_id=device_id)
    value = codec("registry_entry").encode(registry_entry(row, keys))
    return enqueue(conn, tenant_id=tenant_id, topic=topics.REGISTRY.name, key=key, value=value)


def enqueue_new_device(conn: psycopg.Connection, row: dict) -> int:
    """The entry of a device this transaction just inserted (locked already, no JWT keys yet)."""
    tenant_id = str(row["tenant_id"])
    return enqueue(conn, tenant_id=tenant_id, topic=topics.REGISTRY.name, key=device_key(tenant_id, row["device_id"]),
                   value=codec("registry_entry").encode(registry_entry(row, [])))


def enqueue_new_devices(conn: psycopg.Connection, tenant_id: str, rows: list[dict]) -> list[int]:
    """``enqueue_new_device`` for many rows of one tenant, in one pipelined batch."""
    entry = codec("registry_entry")
    return enqueue_many(conn, tenant_id=tenant_id, topic=topics.REGISTRY.name,
                        records=[(device_key(tenant_id, r["device_id"]), entry.encode(registry_entry(r, [])))
                                 for r in rows])


def enqueue_tenant(conn: psycopg.Connection, tenant: dict) -> int:
    """The tenant's status entry. The transaction acts as that tenant for the outbox row (RLS)."""
    tenant_id = str(tenant["id"])
    conn.execute("select set_config('app.tenant_id', %s, true)", (tenant_id,))
    return enqueue(conn, tenant_id=tenant_id, topic=topics.TENANTS.name, key=tenant_id.encode(),
                   value=codec("tenant_entry").encode(tenant_entry(tenant)))


def device_type_entry(row: dict) -> dict[str, Any]:
    """A ``DeviceTypeEntry`` from a ``device_types`` row: its metric declarations, absent keys as null."""
    metrics = {name: {"type": d["type"], "unit": d.get("unit"), "min": _float(d.get("min")),
                      "max": _float(d.get("max")), "enum": d.get("enum")}
               for name, d in (row.get("metrics") or {}).items()}
    return {"tenant_id": str(row["tenant_id"]), "name": row["name"], "metrics": metrics,
            "time": time.time_ns() // 1_000_000}


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def enqueue_device_type(conn: psycopg.Connection, tenant_id: str, name: str, row: dict | None) -> int:
    """The type's declarations as they are in this transaction (``row`` None: deleted, a tombstone), to
    ``fleetstream.device-types`` through the outbox (adr/0182)."""
    value = None if row is None else codec("device_type_entry").encode(device_type_entry(row))
    return enqueue(conn, tenant_id=tenant_id, topic=topics.DEVICE_TYPES.name, key=device_key(tenant_id, name),
                   value=value)
