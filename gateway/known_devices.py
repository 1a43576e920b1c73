"""Which devices exist, remembered for the read routes so a telemetry read needs no Postgres round trips
(adr/0188).

A telemetry read must 404 for a device that is not the token's tenant's (never data). Asking Postgres cost
four round trips per read (pool check, ``set_config``, the select, commit) — more CPU than the cached latest
values it guarded. Devices are registered and decommissioned, not deleted (a decommissioned device keeps its
readable history), so a device once found stays found; the only deletion is the undo of a registration
whose broker call failed, which ``ttl_s`` bounds. Only devices found are remembered: a device registered a
moment ago through another replica is asked about again until Postgres has it. The key is the tenant from
the token and the device id, so one tenant's entries never answer another's question.
"""

from __future__ import annotations

import time

from gateway.crud.devices import get_device
from gateway.db.session import Database


class KnownDevices:
    def __init__(self, db: Database, *, ttl_s: float = 60.0, max_entries: int = 100_000):
        self.db, self.ttl_s, self.max_entries = db, ttl_s, max_entries
        self._until: dict[tuple[str, str], float] = {}

    def known(self, tenant_id: str, device_id: str) -> bool:
        """True when found in Postgres within ``ttl_s``: memory only, safe on the event loop."""
        until = self._until.get((tenant_id, device_id))
        return until is not None and until > time.monotonic()

    def exists(self, tenant_id: str, device_id: str) -> bool:
        """``known``, else asks Postgres in a tenant transaction (RLS) and remembers a device found."""
        if not tenant_id:
            raise ValueError("a device lookup needs a tenant")
        if self.known(tenant_id, device_id):
            return True
        with self.db.tenant_tx(tenant_id) as conn:
            found = get_device(conn, tenant_id=tenant_id, device_id=device_id) is not None
        if found:
            if len(self._until) >= self.max_entries:
                self._until.clear()
            self._until[(tenant_id, device_id)] = time.monotonic() + self.ttl_s
        return found
