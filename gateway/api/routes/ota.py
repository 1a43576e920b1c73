"""OTA campaigns: create (target, waves, soak, concurrency, failure threshold, rollback policy), read
per-wave and per-device status, and pause / resume / cancel. The campaign driver does the rest
(gateway/ota/campaign_runner.py, adr/0081)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from gateway.api.deps import DbDep, OtaDep, require
from gateway.auth.tokens import Principal
from gateway.errors import ERROR_RESPONSES, ApiError, documented, not_found
from gateway.models.devices import Tag
from gateway.ota import campaigns as store
from gateway.ota.campaign_state import (
    InvalidTransitionError,
    JobView,
    assign_waves,
    cancel_jobs,
    count_failures,
    operator_action,
    validate_waves,
)
from gateway.ota.releases import get_release
from schemas.strict import Text

router = APIRouter(prefix="/ota/campaigns", tags=["ota"], responses=ERROR_RESPONSES)
OtaWrite = Annotated[Principal, Depends(require("ota:write"))]
# a campaign's progress is fleet state like a device's firmware version: whoever may read devices may read it
OtaRead = Annotated[Principal, Depends(require("ota:write", "devices:read"))]
MAX_DEVICES = 100_000


class Target(BaseModel):
    device_type: Text = Field(min_length=1, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=20, description="devices carrying all of these tags")
    device_ids: list[Annotated[Text, Field(max_length=64)]] | None = Field(None, min_length=1, max_length=MAX_DEVICES,
                                         description="an explicit list instead of tags")

    @model_validator(mode="after")
    def _one_selector(self):
        if self.device_ids is not None and self.tags:
            raise ValueError("give tags or device_ids, not both")
        return self


class CampaignIn(BaseModel):
    name: Text = Field("", max_length=200)
    target: Target
    target_version: Text = Field(min_length=1, max_length=128)
    waves: list[int] = Field([100], min_length=1, max_length=20, description="cumulative percentages, e.g. [1,10,50,100]")
    soak_s: int = Field(0, ge=0, le=30 * 86_400, description="wait after a wave finished before the next starts")
    max_concurrent: int = Field(50, ge=1, le=100_000, description="devices downloading at once")
    failure_threshold: float = Field(0.1, ge=0, le=1, description="failed share of started devices that stops the rollout")
    on_threshold: Literal["pause", "abort"] = "abort"
    rollback: Literal["none", "failed", "failed_or_silent"] = "failed"
    device_deadline_s: int = Field(3600, ge=1, le=30 * 86_400, description="time a device has to report a final state")
    redeliver_s: int = Field(60, ge=1, le=86_400, description="resend a job not yet picked up after this long")


class WaveOut(BaseModel):
    wave: int
    percent: int
    devices: int
    states: dict[str, int]


class CampaignOut(BaseModel):
    id: str
    name: str
    device_type: str
    target_version: str
    selector: dict
    state: str
    reason: str | None
    current_wave: int
    waves: list[WaveOut]
    soak_s: int
    max_concurrent: int
    failure_threshold: float
    on_threshold: str
    rollback: str
    device_deadline_s: int
    redeliver_s: int
    created_at: dt.datetime
    updated_at: dt.datetime


class CampaignList(BaseModel):
    data: list[CampaignOut]
    count: int


class JobOut(BaseModel):
    device_id: str
    wave: int
    state: str
    reason: str | None
    from_version: str | None
    progress: dict
    attempts: int
    sent_at: dt.datetime | None
    reported_at: dt.datetime | None


class JobList(BaseModel):
    data: list[JobOut]
    count: int


def _out(c: dict, counts: list[dict]) -> CampaignOut:
    waves = [WaveOut(wave=i, percent=p, devices=0, states={}) for i, p in enumerate(c["waves"])]
    for r in counts:
        w = waves[r["wave"]]
        w.states[r["state"]] = r["n"]
        w.devices += r["n"]
    return CampaignOut(id=str(c["id"]), waves=waves, **{k: c[k] for k in (
        "name", "device_type", "target_version", "selector", "state", "reason", "current_wave", "soak_s",
        "max_concurrent", "failure_threshold", "on_threshold", "rollback", "device_deadline_s", "redeliver_s",
        "created_at", "updated_at")})


def _uuid(campaign_id: str) -> str:
    try:
        return str(uuid.UUID(campaign_id))
    except ValueError:
        raise not_found(f"campaign {campaign_id!r}") from None


@router.post("", status_code=201, response_model=CampaignOut, summary="Start a staged rollout",
             responses=documented({409: "a targeted device is already in a running campaign"}))
async def create_campaign(principal: OtaWrite, body: CampaignIn, db: DbDep) -> CampaignOut:
    if problem := validate_waves(body.waves):
        raise ApiError(422, "invalid_waves", problem)
    tenant, t = principal.tenant_id, body.target

    def run():
        with db.tenant_tx(tenant) as conn:
            if get_release(conn, tenant_id=tenant, device_type=t.device_type, version=body.target_version) is None:
                raise ApiError(422, "unknown_release", f"no firmware {t.device_type} {body.target_version}; upload it first")
            if t.device_ids is not None:
                found = store.devices_of_type(conn, tenant_id=tenant, device_type=t.device_type, device_ids=t.device_ids)
                missing = sorted(set(t.device_ids) - set(found))
                if missing:
                    raise ApiError(422, "unknown_devices", f"not active devices of type {t.device_type}: "
                                                           f"{', '.join(missing[:20])}")
                selector = {"device_ids": found}
            else:
                found = store.select_devices(conn, tenant_id=tenant, device_type=t.device_type, tags=t.tags)
                selector = {"tags": t.tags}
            if not found:
                raise ApiError(422, "no_devices", f"no active device of type {t.device_type} matches the target")
            busy = store.busy_devices(conn, tenant_id=tenant, device_ids=found)
            if busy:
                raise ApiError(409, "devices_busy", f"already in a running campaign: {', '.join(busy[:20])}")
            seed = uuid.uuid4().hex
            fields = body.model_dump(exclude={"target"}) | {"device_type": t.device_type}
            c = store.create_campaign(conn, tenant_id=tenant, selector=selector | {"seed": seed},
                                      waves_by_device=assign_waves(found, body.waves, seed), **fields)
            return c, store.wave_counts(conn, tenant_id=tenant, campaign_id=c["id"])

    return _out(*await run_in_threadpool(run))


@router.get("", response_model=CampaignList, summary="Campaigns of this tenant, newest first")
async def list_campaigns(principal: OtaRead, db: DbDep) -> CampaignList:
    tenant = principal.tenant_id

    def run():
        with db.tenant_tx(tenant) as conn:
            return [_out(c, store.wave_counts(conn, tenant_id=tenant, campaign_id=c["id"]))
                    for c in store.list_campaigns(conn, tenant_id=tenant)]

    data = await run_in_threadpool(run)
    return CampaignList(data=data, count=len(data))


@router.get("/{campaign_id}", response_model=CampaignOut, summary="A campaign with per-wave status")
async def get_campaign(principal: OtaRead, campaign_id: str, db: DbDep) -> CampaignOut:
    tenant, cid = principal.tenant_id, _uuid(campaign_id)

    def run():
        with db.tenant_tx(tenant) as conn:
            c = store.get_campaign(conn, tenant_id=tenant, campaign_id=cid)
            return c and (c, store.wave_counts(conn, tenant_id=tenant, campaign_id=cid))

    found = await run_in_threadpool(run)
    if not found:
        raise not_found(f"campaign {campaign_id!r}")
    return _out(*found)


@router.get("/{campaign_id}/devices", response_model=JobList, summary="Per-device status of a campaign")
async def campaign_devices(principal: OtaRead, campaign_id: str, db: DbDep,
                           state: Annotated[str | None, Query(max_length=32)] = None,
                           wave: Annotated[int | None, Query(ge=0)] = None) -> JobList:
    tenant, cid = principal.tenant_id, _uuid(campaign_id)

    def run():
        with db.tenant_tx(tenant) as conn:
            if store.get_campaign(conn, tenant_id=tenant, campaign_id=cid) is None:
                return None
            return store.list_jobs(conn, tenant_id=tenant, campaign_id=cid, state=state, wave=wave)

    rows = await run_in_threadpool(run)
    if rows is None:
        raise not_found(f"campaign {campaign_id!r}")
    data = [JobOut(**{k: r[k] for k in JobOut.model_fields}) for r in rows]
    return JobList(data=data, count=len(data))


@router.post("/{campaign_id}/{action}", response_model=CampaignOut, summary="Pause, resume or cancel a campaign",
             responses=documented({409: "the campaign's state does not allow this"}))
async def campaign_action(principal: OtaWrite, campaign_id: str, action: Literal["pause", "resume", "cancel"],
                          db: DbDep, ota: OtaDep) -> CampaignOut:
    tenant, cid = principal.tenant_id, _uuid(campaign_id)

    def run():
        with db.tenant_tx(tenant) as conn:
            c = store.get_campaign(conn, tenant_id=tenant, campaign_id=cid, lock=True)
            if c is None:
                raise not_found(f"campaign {campaign_id!r}")
            try:
                new = operator_action(c["state"], action)
            except InvalidTransitionError as exc:
                raise ApiError(409, "invalid_state", str(exc)) from exc
            tell: list[dict] = []
            extra: dict = {}
            if new == "running":  # resuming accepts the failures so far; new ones count against the threshold
                rows = store.list_jobs(conn, tenant_id=tenant, campaign_id=cid)
                extra["failure_baseline"] = count_failures(JobView(r["device_id"], r["wave"], r["state"]) for r in rows)
            if new == "cancelled":
                rows = store.list_jobs(conn, tenant_id=tenant, campaign_id=cid)
                drop, notify = cancel_jobs(JobView(r["device_id"], r["wave"], r["state"]) for r in rows)
                kw = {"tenant_id": tenant, "campaign_id": cid, "state": "cancelled", "reason": "campaign cancelled"}
                store.set_jobs(conn, **kw, device_ids=set(drop) - set(notify), from_states=["pending"])
                notify = [r["device_id"] for r in store.set_jobs(conn, **kw, device_ids=notify, from_states=["sent"])]
                if ota.runner is not None:
                    tell = ota.runner.cancel(tenant, cid, notify)
                    store.record_commands(conn, tenant_id=tenant, campaign_id=cid,
                                          commands=[(m["command_id"], m["device_id"], "cancel") for m in tell])
                    ota.runner.enqueue(conn, tell)  # produced when this commits: an answer finds its command
            c = store.set_campaign(conn, tenant_id=tenant, campaign_id=cid, state=new,
                                   reason=f"{action} by {principal.client_id}", **extra)
            counts = store.wave_counts(conn, tenant_id=tenant, campaign_id=cid)
        return c, counts

    return _out(*await run_in_threadpool(run))
