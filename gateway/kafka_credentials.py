"""Tenant Kafka credentials (adr/0145): a SASL/SCRAM-SHA-512 user per credential, allowed to READ/DESCRIBE its
tenant's export topic(s) and to use consumer groups under its tenant's prefix, nothing else (the cluster's
authorizer denies what no ACL allows). Issued and revoked through Kafka's admin API; Postgres keeps the record
without the secret.

Postgres and Kafka cannot share a transaction, so the row is an intent log around the Kafka calls:

- issue: row ``pending`` (committed) → ACLs, then the SCRAM credential → row ``active`` (+ audit). A failure
  after the row is written is undone at once (``failing`` → remove from Kafka → ``failed``); a crash leaves a
  ``pending`` row, which the sweep (each issue, and every minute in the gateway) undoes once it is older than
  any request can take.
- revoke: row ``revoking`` (+ audit, committed) → ACLs removed (reads stop at once, even on open
  connections), then the SCRAM credential (no new logins) → row ``revoked``. A crash leaves ``revoking``,
  which the sweep finishes.

Removing is idempotent (no ACLs left or no credential is success), so the sweep may repeat any step.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from gateway.auth.tokens import Principal
from gateway.crud import audit
from gateway.crud import kafka_credentials as crud
from gateway.db.session import Database
from gateway.errors import ApiError, not_found
from runtime.kafka import KafkaClients, ensure_tenant_export_topic
from runtime.settings import Settings
from schemas.topics import tenant_export_topics, tenant_group_prefix

log = logging.getLogger(__name__)

SCRAM_ITERATIONS = 8192  # Kafka accepts 4096..16384
MAX_ACTIVE_PER_TENANT = 20
# a request's Kafka calls take at most two admin timeouts; a pending row older than this is abandoned
PENDING_ABANDONED_S = 180.0
ADMIN_TIMEOUT_S = 30.0


def unavailable_reason(s: Settings) -> str | None:
    """Why this deployment cannot issue tenant Kafka credentials, or None when it can."""
    protocol = s.kafka_security_protocol.upper()
    if not protocol.startswith("SASL_"):
        return (f"tenant Kafka credentials need a SASL cluster with SCRAM and an authorizer; this platform's Kafka "
                f"runs {protocol} (locally: `fleetstream up --kafka-brokers 3`; see adr/0145)")
    if not s.kafka_sasl_mechanism.upper().startswith("SCRAM-"):
        return (f"tenant Kafka credentials are SCRAM users; this platform authenticates to Kafka with "
                f"{s.kafka_sasl_mechanism}, whose users are not managed through Kafka's admin API (adr/0145)")
    return None


def principal_of(username: str) -> str:
    return f"User:{username}"


def grants(username: str, tenant_id: str) -> list[AclBinding]:
    """Everything the credential may do: read its tenant's export topic(s), use its tenant's groups."""
    who, allow = principal_of(username), AclPermissionType.ALLOW
    out = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, who, "*", op, allow)
           for topic in tenant_export_topics(tenant_id) for op in (AclOperation.READ, AclOperation.DESCRIBE)]
    out += [AclBinding(ResourceType.GROUP, tenant_group_prefix(tenant_id), ResourcePatternType.PREFIXED, who, "*",
                       op, allow) for op in (AclOperation.READ, AclOperation.DESCRIBE)]
    return out


class KafkaAccess:
    """SCRAM users and their ACLs through the platform's admin client (the cluster's super user)."""

    def __init__(self, kafka: KafkaClients, timeout_s: float = ADMIN_TIMEOUT_S, partitions: int = 6):
        self.kafka = kafka
        self.timeout_s = timeout_s
        self.partitions = partitions  # of the export topic, when this creates it (settings.kafka_partitions)
        self._admin = None
        self._lock = threading.Lock()

    @property
    def admin(self):
        with self._lock:
            if self._admin is None:
                self._admin = self.kafka.admin(client_id="fleetstream-kafka-credentials")
            return self._admin

    def grant(self, username: str, password: str, tenant_id: str) -> None:
        """The export topic, the ACLs, then the login: the user can authenticate only once it has its grants, and
        never meets a missing topic (adr/0146)."""
        ensure_tenant_export_topic(self.kafka, self.admin, tenant_id, self.partitions, self.timeout_s)
        for fut in self.admin.create_acls(grants(username, tenant_id), request_timeout=self.timeout_s).values():
            fut.result(self.timeout_s)
        upsert = UserScramCredentialUpsertion(username, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512,
                                                                            SCRAM_ITERATIONS), password.encode())
        for fut in self.admin.alter_user_scram_credentials([upsert], request_timeout=self.timeout_s).values():
            fut.result(self.timeout_s)

    def remove(self, username: str) -> None:
        """Every ACL of the user (reads stop on open connections too), then its login. Idempotent."""
        anything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal_of(username), None,
                                    AclOperation.ANY, AclPermissionType.ANY)
        for fut in self.admin.delete_acls([anything], request_timeout=self.timeout_s).values():
            fut.result(self.timeout_s)
        deletion = UserScramCredentialDeletion(username, ScramMechanism.SCRAM_SHA_512)
        for fut in self.admin.alter_user_scram_credentials([deletion], request_timeout=self.timeout_s).values():
            try:
                fut.result(self.timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.RESOURCE_NOT_FOUND:  # no credential: already removed
                    raise


@dataclass
class Issued:
    row: dict
    password: str


def _credential_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise not_found(f"Kafka credential {value!r}") from None


def _kafka_failed(what: str, exc: Exception) -> ApiError:
    log.warning("tenant Kafka credential: %s failed: %s", what, exc)
    return ApiError(503, "kafka_unavailable", f"Kafka did not complete the {what}; nothing was left half-done, "
                                              "try again")


class KafkaCredentials:
    def __init__(self, s: Settings, db: Database, access: KafkaAccess):
        self.s, self.db, self.access = s, db, access

    # -- issue --------------------------------------------------------------------------------------------
    def issue(self, principal: Principal, name: str) -> Issued:
        if reason := unavailable_reason(self.s):
            raise ApiError(409, "kafka_credentials_unavailable", reason)
        tenant = principal.tenant_id
        self.sweep(tenant)
        username = f"tenant-{tenant}-{secrets.token_hex(6)}"
        password = secrets.token_urlsafe(32)
        with self.db.tenant_tx(tenant) as conn:
            active = [r for r in crud.list_all(conn, tenant_id=tenant) if r["status"] in ("pending", "active")]
            if len(active) >= MAX_ACTIVE_PER_TENANT:
                raise ApiError(409, "too_many_kafka_credentials",
                               f"a tenant holds at most {MAX_ACTIVE_PER_TENANT} Kafka credentials; revoke one first")
            row = crud.begin(conn, tenant_id=tenant, username=username, name=name,
                             topics=tenant_export_topics(tenant), group_prefix=tenant_group_prefix(tenant),
                             created_by=principal.client_id)
        cid = str(row["id"])
        try:
            self.access.grant(username, password, tenant)
        except Exception as exc:
            self._undo(tenant, cid, username, str(exc))
            raise _kafka_failed("credential's creation", exc) from exc
        try:
            with self.db.tenant_tx(tenant) as conn:
                done = crud.activate(conn, tenant_id=tenant, credential_id=cid)
                if done is not None:
                    audit.record(conn, tenant_id=tenant, actor=principal.client_id, action="kafka_credential.create",
                                 target=f"kafka_credential:{cid}",
                                 details={"username": username, "topics": done["topics"],
                                          "group_prefix": done["group_prefix"]})
        except Exception as exc:
            self._undo(tenant, cid, username, f"not activated: {exc}")
            raise _kafka_failed("credential's record", exc) from exc
        if done is None:  # the sweep gave it up meanwhile (a very slow request): it is being removed
            self._undo(tenant, cid, username, "abandoned before activation")
            raise ApiError(503, "kafka_unavailable", "the credential took too long to create and was withdrawn; "
                                                     "try again")
        return Issued(done, password)

    def _undo(self, tenant: str, cid: str, username: str, error: str) -> bool:
        """Compensation of a failed or abandoned issue: True once Kafka holds nothing of it. A row that did get
        activated meanwhile is kept; if Kafka cannot be reached now, the row stays for the sweep."""
        try:
            with self.db.tenant_tx(tenant) as conn:
                crud.mark_failing(conn, tenant_id=tenant, credential_id=cid, error=error)
                row = crud.get(conn, tenant_id=tenant, credential_id=cid)
            if row is None or row["status"] != "failing":  # activated after all (or settled): not ours to undo
                return False
            self.access.remove(username)
            with self.db.tenant_tx(tenant) as conn:
                crud.mark_failed(conn, tenant_id=tenant, credential_id=cid)
            return True
        except Exception as exc:
            log.warning("tenant Kafka credential %s not undone yet (%s): the sweep retries", cid, exc)
            return False

    # -- read ---------------------------------------------------------------------------------------------
    def list(self, tenant: str) -> list[dict]:
        with self.db.tenant_tx(tenant) as conn:
            return crud.list_all(conn, tenant_id=tenant)

    def get(self, tenant: str, cid: str) -> dict:
        cid = _credential_id(cid)
        with self.db.tenant_tx(tenant) as conn:
            row = crud.get(conn, tenant_id=tenant, credential_id=cid)
        if row is None or row["status"] in ("failing", "failed"):
            raise not_found(f"Kafka credential {cid!r}")
        return row

    # -- revoke -------------------------------------------------------------------------------------------
    def revoke(self, principal: Principal, cid: str) -> dict:
        tenant, cid = principal.tenant_id, _credential_id(cid)
        with self.db.tenant_tx(tenant) as conn:
            row = crud.get(conn, tenant_id=tenant, credential_id=cid)
            if row is None or row["status"] in ("failed", "failing"):
                raise not_found(f"Kafka credential {cid!r}")
            if row["status"] == "revoked":
                return row
            if row["status"] == "pending":
                raise ApiError(409, "kafka_credential_pending", "the credential is still being created")
            first = row["status"] == "active"  # a repeated DELETE of a revoking one finishes it, unaudited
            row = crud.mark_revoking(conn, tenant_id=tenant, credential_id=cid)
            if first:
                audit.record(conn, tenant_id=tenant, actor=principal.client_id, action="kafka_credential.revoke",
                             target=f"kafka_credential:{cid}", details={"username": row["username"]})
        return self._finish_revoke(tenant, row, raise_on_error=True)

    def _finish_revoke(self, tenant: str, row: dict, raise_on_error: bool) -> dict:
        cid = str(row["id"])
        try:
            self.access.remove(row["username"])
        except Exception as exc:
            if raise_on_error:  # the row stays revoking: the sweep finishes it
                raise ApiError(503, "kafka_unavailable", "Kafka did not confirm the removal yet; the credential "
                                                         "stays 'revoking' and is removed as soon as Kafka answers"
                               ) from exc
            raise
        with self.db.tenant_tx(tenant) as conn:
            return crud.mark_revoked(conn, tenant_id=tenant, credential_id=cid) or row

    # -- sweep --------------------------------------------------------------------------------------------
    def sweep(self, tenant: str) -> int:
        """Settles the tenant's rows a crash left behind: abandoned issues undone, revocations finished."""
        with self.db.tenant_tx(tenant) as conn:
            rows = crud.unsettled(conn, tenant_id=tenant, pending_older_than_s=PENDING_ABANDONED_S)
        settled = 0
        for row in rows:
            cid = str(row["id"])
            try:
                if row["status"] == "revoking":
                    self._finish_revoke(tenant, row, raise_on_error=False)
                    settled += 1
                elif self._undo(tenant, cid, row["username"], "abandoned"):
                    settled += 1
            except Exception as exc:  # Kafka still away: next time
                log.warning("tenant Kafka credential %s not settled yet: %s", cid, exc)
        return settled

    def sweep_everywhere(self) -> int:
        """The gateway's periodic round over every tenant (ids from a definer function, rows under RLS)."""
        with self.db.anonymous_tx() as conn:
            tenants = {t for t, _ in crud.unsettled_everywhere(conn, pending_older_than_s=PENDING_ABANDONED_S)}
        return sum(self.sweep(t) for t in sorted(tenants))
