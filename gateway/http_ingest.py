"""The gateway's HTTP ingest service (adr/0044): device authentication against Postgres and the tenant CAs,
and the HTTP connector that admits readings and publishes them to Kafka. One per gateway process, made at
the first ``POST /v1/ingest`` (gateway/api/deps.py, ``IngestDep``)."""

from __future__ import annotations

from connectors.http import (
    ALLOWED_STATUSES,
    Admission,
    DeviceAuthenticator,
    HttpIngestConnector,
    TokenBuckets,
    UplinkPublisher,
)
from runtime.device_jwt import DeviceJwtVerifier, DeviceKey
from runtime.settings import Settings

from .admin import Admin
from .auth.revocation import AuthState
from .crud import credentials as creds_crud
from .crud import devices as devices_crud
from .db.session import Database


class IngestService:
    """``auth`` authenticates a request as a device; ``connector`` admits its readings and publishes them."""

    def __init__(self, s: Settings, db: Database, admin: Admin, auth_state: AuthState):

        def key_lookup(tenant_id: str, device_id: str, kid: str) -> DeviceKey | None:
            # only the key of the device the token names (iss = tenant, sub = device): adr/0106
            with db.pool.connection() as conn:
                row = creds_crud.device_key(conn, tenant_id=tenant_id, device_id=device_id, key_id=kid)
            if row is None:
                return None
            return DeviceKey(kid, tenant_id, device_id, row["public_key_pem"],
                             active=row["device_status"] in ALLOWED_STATUSES and row["tenant_status"] == "active")

        def tenant_ca(tenant_id: str) -> str | None:
            try:
                return admin.cas.ca_certificate_pem(tenant_id)
            except Exception:  # no CA: no such tenant
                return None

        def device_status(tenant_id: str, device_id: str) -> str | None:
            with db.tenant_tx(tenant_id) as conn:
                row = devices_crud.get_device(conn, tenant_id=tenant_id, device_id=device_id)
            if row and auth_state.tenant_refused(tenant_id):
                return "suspended"  # the tenant's, not the device's: refused all the same (adr/0107)
            return row["status"] if row else None

        self.auth = DeviceAuthenticator(DeviceJwtVerifier(key_lookup), tenant_ca=tenant_ca,
                                        device_status=device_status,
                                        trusted_proxies=getattr(s, "ingest_trusted_proxies", []))
        rate = TokenBuckets(getattr(s, "ingest_rate_per_s", 100.0), getattr(s, "ingest_burst", 200.0))
        # the key lookup already refused unknown and suspended devices; admission adds the rate limit
        self.connector = HttpIngestConnector(UplinkPublisher(s.kafka, "http", instance="gateway"),
                                             Admission(None, rate, require_registered=False),
                                             max_skew_ms=s.max_clock_skew_s * 1000)
