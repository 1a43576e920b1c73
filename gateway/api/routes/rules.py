"""Tenant rules: ``/v1/rules`` (adr/0055). Documents are validated by ``schemas.rules.RuleDocument``, kept
with every version in Postgres (RLS), and published to the compacted ``fleetstream.rules`` topic (key
``tenant:rule_id``; a tombstone on delete) for the rules agent, through the transactional outbox: the
record is written in the rule's own transaction and reaches Kafka exactly when it commits (adr/0108);
the answer waits until Kafka has it. Dry-run evaluates a document against a device's
recent telemetry without saving it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from gateway.api.deps import DbDep, OutboxDep, SettingsDep, StoreDep, require
from gateway.auth.tokens import Principal
from gateway.crud import rules as crud
from gateway.crud.devices import get_device
from gateway.db.session import Database
from gateway.errors import ERROR_RESPONSES, ApiError, documented, not_found
from gateway.outbox import Outbox, enqueue
from schemas import codec, topics
from schemas.rules import RuleDocument, evaluate, in_scope
from schemas.strict import Text
from schemas.webhook_targets import REFUSED_HINT, WebhookPolicy

router = APIRouter(prefix="/rules", tags=["rules"], responses=ERROR_RESPONSES)
Writer = Annotated[Principal, Depends(require("rules:write"))]
Reader = Annotated[Principal, Depends(require("devices:read"))]


class RuleIn(RuleDocument):
    enabled: bool = True


class RuleOut(BaseModel):
    rule_id: str
    version: int
    enabled: bool
    document: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class RuleList(BaseModel):
    data: list[RuleOut]
    count: int


class DryRunIn(BaseModel):
    rule: RuleDocument
    device_id: Text = Field(min_length=1, max_length=64)
    hours: float = Field(24, gt=0, le=24 * 30, description="how far back to replay")


class DryRunOut(BaseModel):
    device_id: str
    in_scope: bool
    readings: int
    evaluations: int
    transitions: list[dict[str, Any]]


# Write-only fields of a rule document: stored and published to the rules agent (which signs with them), never
# answered. An answer carries ``"secret_set": true`` in their place; a replace (PUT) sends the secret again.
WRITE_ONLY = ("secret",)


def redacted(document: dict) -> dict:
    """``document`` as answers show it: every action's write-only fields replaced by ``<name>_set: true``."""
    actions = document.get("actions")
    if not isinstance(actions, list):
        return document
    out = []
    for action in actions:
        if isinstance(action, dict) and any(k in action for k in WRITE_ONLY):
            action = {k: v for k, v in action.items() if k not in WRITE_ONLY} | {
                f"{k}_set": True for k in WRITE_ONLY if k in action}
        out.append(action)
    return {**document, "actions": out}


def _out(row: dict) -> RuleOut:
    return RuleOut(rule_id=str(row["rule_id"]), version=row["version"], enabled=row["enabled"],
                   document=redacted(row["document"]), created_at=row["created_at"], updated_at=row["updated_at"])


def _doc(body: RuleDocument) -> dict:
    return body.model_dump(mode="json", exclude_none=True, exclude={"enabled"})


def rule_record(row: dict) -> bytes:
    return codec("rule_entry").encode({"tenant_id": str(row["tenant_id"]), "rule_id": str(row["rule_id"]),
                                       "version": row["version"], "enabled": row["enabled"],
                                       "document_json": json.dumps(row["document"])})


def _enqueue(conn, row: dict | None, tenant_id: str, rule_id: str) -> int:
    """The rule's record (a tombstone for ``row`` None) into this transaction's outbox."""
    return enqueue(conn, tenant_id=tenant_id, topic=topics.RULES.name, key=f"{tenant_id}:{rule_id}".encode(),
                   value=rule_record(row) if row else None)


async def _save(db: Database, outbox: Outbox, tenant_id: str, fn) -> dict | None:
    """Runs ``fn(conn)`` in a tenant transaction with its rule's record in the same transaction's outbox, and
    returns once Kafka has the record (or the wait ran out: the relay still publishes it)."""

    def run():
        with db.tenant_tx(tenant_id) as conn:
            row = fn(conn)
            published = _enqueue(conn, row, tenant_id, str(row["rule_id"])) if row is not None else None
        return row, published

    row, published = await run_in_threadpool(run)
    if published is not None:
        await run_in_threadpool(outbox.wait, [published])
    return row


RESOLVE_TIMEOUT_S = 3


async def _check_webhooks(webhook_allow: str, body: RuleDocument) -> None:
    """422 for a webhook whose target is not a public address (or named by the allow-list): its literal
    address, or what its name resolves to now. The rules agent checks again when it sends (adr/0110)."""
    policy = WebhookPolicy.parse(webhook_allow)
    for i, action in enumerate(body.actions):
        if action.type != "webhook":
            continue
        url = str(action.url)
        try:
            problem = await asyncio.wait_for(run_in_threadpool(policy.check, url), RESOLVE_TIMEOUT_S)
        except TimeoutError:  # no answer from DNS now: the sender's check decides
            problem = policy.check(url, resolve=False)
        if problem:
            raise ApiError(422, "webhook_target_refused", f"actions.{i}.url: {problem}; {REFUSED_HINT}")


@router.post("", status_code=201, response_model=RuleOut, summary="Create a rule (validated; version 1)")
async def create_rule(body: RuleIn, principal: Writer, db: DbDep, outbox: OutboxDep,
                      s: SettingsDep) -> RuleOut:
    await _check_webhooks(s.webhook_allow, body)
    t = principal.tenant_id
    row = await _save(db, outbox, t, lambda c: crud.create_rule(c, tenant_id=t, name=body.name,
                                                                document=_doc(body), enabled=body.enabled))
    return _out(row)


@router.get("", response_model=RuleList, summary="The tenant's rules")
async def list_rules(principal: Reader, db: DbDep, enabled: bool | None = None) -> RuleList:
    def run():
        with db.tenant_tx(principal.tenant_id) as c:
            return crud.list_rules(c, tenant_id=principal.tenant_id, enabled=enabled)

    rows = await run_in_threadpool(run)
    return RuleList(data=[_out(r) for r in rows], count=len(rows))


@router.get("/{rule_id}", response_model=RuleOut, summary="One rule, current version")
async def get_rule(rule_id: str, principal: Reader, db: DbDep) -> RuleOut:
    def run():
        with db.tenant_tx(principal.tenant_id) as c:
            return crud.get_rule(c, tenant_id=principal.tenant_id, rule_id=_uuid(rule_id))

    row = await run_in_threadpool(run)
    if row is None:
        raise not_found(f"rule {rule_id!r}")
    return _out(row)


@router.get("/{rule_id}/versions", summary="Every saved version of a rule")
async def rule_versions(rule_id: str, principal: Reader, db: DbDep) -> dict:
    def run():
        with db.tenant_tx(principal.tenant_id) as c:
            return crud.rule_versions(c, tenant_id=principal.tenant_id, rule_id=_uuid(rule_id))

    rows = await run_in_threadpool(run)
    if not rows:
        raise not_found(f"rule {rule_id!r}")
    return {"data": [{**r, "document": redacted(r["document"]), "created_at": r["created_at"].isoformat()}
                     for r in rows], "count": len(rows)}


@router.put("/{rule_id}", response_model=RuleOut, summary="Replace a rule's document (a new version); If-Match: version",
            responses=documented({412: "If-Match is not the current version"}))
async def replace_rule(rule_id: str, body: RuleIn, principal: Writer, db: DbDep, outbox: OutboxDep,
                       s: SettingsDep, if_match: Annotated[str | None, Header()] = None) -> RuleOut:
    await _check_webhooks(s.webhook_allow, body)
    return await _update(db, outbox, principal.tenant_id, rule_id, document=_doc(body), enabled=body.enabled,
                         expected=_version(if_match))


@router.post("/{rule_id}/enable", response_model=RuleOut, summary="Enable a rule")
async def enable_rule(rule_id: str, principal: Writer, db: DbDep, outbox: OutboxDep) -> RuleOut:
    return await _update(db, outbox, principal.tenant_id, rule_id, enabled=True)


@router.post("/{rule_id}/disable", response_model=RuleOut, summary="Disable a rule (its active alerts stay)")
async def disable_rule(rule_id: str, principal: Writer, db: DbDep, outbox: OutboxDep) -> RuleOut:
    return await _update(db, outbox, principal.tenant_id, rule_id, enabled=False)


@router.delete("/{rule_id}", status_code=204, summary="Delete a rule and its versions")
async def delete_rule(rule_id: str, principal: Writer, db: DbDep, outbox: OutboxDep) -> Response:
    t = principal.tenant_id
    rid = _uuid(rule_id)

    def run():
        with db.tenant_tx(t) as c:
            return _enqueue(c, None, t, rid) if crud.delete_rule(c, tenant_id=t, rule_id=rid) else None

    published = await run_in_threadpool(run)
    if published is None:
        raise not_found(f"rule {rule_id!r}")
    await run_in_threadpool(outbox.wait, [published])
    return Response(status_code=204)


@router.post("/dry-run", response_model=DryRunOut, summary="Evaluate a rule against a device's recent telemetry")
async def dry_run(body: DryRunIn, principal: Reader, db: DbDep, store: StoreDep) -> DryRunOut:
    t = principal.tenant_id
    doc = body.rule.model_dump(mode="json", exclude_none=True)
    metrics = sorted(_metrics(doc["condition"]))
    end = dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=body.hours)

    def run():
        with db.tenant_tx(t) as c:
            dev = get_device(c, tenant_id=t, device_id=body.device_id)
        if dev is None:
            return None, {}
        merged: dict[int, dict] = {}
        for m in metrics:
            for p in store.raw_points(tenant_id=t, device_id=body.device_id, metric=m, start=start, end=end,
                                      limit=100_000):
                merged.setdefault(int(p.ts.timestamp() * 1000), {})[m] = p.value
        return dev, merged

    dev, readings = await run_in_threadpool(run)
    if dev is None:
        raise not_found(f"device {body.device_id!r}")
    scoped = in_scope(doc.get("scope", {}), body.device_id, dev.get("device_type"), list(dev.get("tags") or []))
    state: dict = {}
    active, transitions, evaluations = False, [], 0
    for ts in sorted(readings):
        evaluations += 1
        r = evaluate(doc["condition"], readings[ts], ts, state)
        if r is True and not active:
            transitions.append({"ts": ts, "event": "fire", "values": readings[ts]})
        elif r is False and active:
            transitions.append({"ts": ts, "event": "clear", "values": readings[ts]})
        active = active if r is None else r
    return DryRunOut(device_id=body.device_id, in_scope=scoped, readings=len(readings), evaluations=evaluations,
                     transitions=transitions)


async def _update(db: Database, outbox: Outbox, tenant_id: str, rule_id: str, *, document: dict | None = None,
                  enabled: bool | None = None, expected: int | None = None) -> RuleOut:
    rid = _uuid(rule_id)

    def fn(c):
        try:
            return crud.update_rule(c, tenant_id=tenant_id, rule_id=rid, document=document, enabled=enabled,
                                    expected_version=expected)
        except crud.VersionConflict as exc:
            raise ApiError(412, "version_mismatch", f"If-Match {expected}: {exc}") from exc

    row = await _save(db, outbox, tenant_id, fn)
    if row is None:
        raise not_found(f"rule {rule_id!r}")
    return _out(row)


def _metrics(cond: dict) -> set[str]:
    out = set()
    for k in ("metric", "lat_metric", "lon_metric"):
        if cond.get(k):
            out.add(cond[k])
    if cond["type"] == "geofence":
        out |= {cond.get("lat_metric", "lat"), cond.get("lon_metric", "lon")}
    for sub in cond.get("conditions", []) + ([cond["condition"]] if "condition" in cond else []):
        out |= _metrics(sub)
    return out


def _uuid(value: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise not_found(f"rule {value!r}") from exc


def _version(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip().strip('"'))
    except ValueError as exc:
        raise ApiError(400, "bad_if_match", "If-Match must be a rule version number") from exc
