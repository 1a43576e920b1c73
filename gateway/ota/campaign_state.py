"""The campaign state machine as pure functions (adr/0081): no I/O, no clock, so every transition is
unit-tested and the driver (campaign_runner.py) only loads state, calls ``plan_tick`` and applies it.

Campaign states::

    running ──pause──► paused ──resume──► running
    running ──failures > threshold──► paused | aborted   (per on_threshold)
    running ──last wave done and soaked──► completed
    running | paused ──cancel──► cancelled

Device job states::

    pending ─► sent ─► downloading ─► downloaded ─► verifying ─► installing ─► rebooting ─► succeeded
                 └──────────────┴─────────┴───────────┴─────────────┴────────────┴──────► failed (reason)
    sent … rebooting ──no terminal report within device_deadline_s──► timed_out
    failed | timed_out ──rollback policy──► rollback_sent ─► rolled_back | rollback_failed
                                            (no answer within device_deadline_s ─► rollback_failed)
    pending ─► skipped (campaign aborted) | cancelled (campaign cancelled);  sent ─► cancelled
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PROGRESS = ("sent", "downloading", "downloaded", "verifying", "installing", "rebooting")
REPORTABLE = PROGRESS[1:] + ("succeeded", "failed")
ACTIVE = frozenset(PROGRESS)
DOWNLOAD_SLOTS = frozenset({"sent", "downloading"})  # what max_concurrent limits
FAILURES = frozenset({"failed", "timed_out", "rollback_sent", "rolled_back", "rollback_failed"})
TERMINAL = frozenset({"succeeded", "skipped", "cancelled"}) | FAILURES
CAMPAIGN_STATES = ("running", "paused", "aborted", "cancelled", "completed")
_ORDER = {s: i for i, s in enumerate(PROGRESS + ("succeeded",))}


class InvalidTransitionError(ValueError):
    """An operator action the campaign's current state does not allow (HTTP 409)."""


@dataclass(frozen=True)
class CampaignView:
    state: str
    current_wave: int
    wave_count: int
    wave_started_at: float
    wave_done_at: float | None
    soak_s: int
    max_concurrent: int
    failure_threshold: float
    on_threshold: str  # pause | abort
    rollback: str  # none | failed | failed_or_silent
    device_deadline_s: int
    redeliver_s: int
    failure_baseline: int = 0  # failures an operator accepted when resuming


@dataclass(frozen=True)
class JobView:
    device_id: str
    wave: int
    state: str
    sent_at: float | None = None
    last_sent_at: float | None = None
    rollback_sent_at: float | None = None


@dataclass
class TickPlan:
    send_update: list[str] = field(default_factory=list)  # first delivery of the job
    redeliver_update: list[str] = field(default_factory=list)  # still silent since the last delivery
    time_out: list[str] = field(default_factory=list)
    send_rollback: list[str] = field(default_factory=list)
    redeliver_rollback: list[str] = field(default_factory=list)
    rollback_unanswered: list[str] = field(default_factory=list)  # deadline passed: give up on the rollback
    skip: list[str] = field(default_factory=list)
    campaign_state: str | None = None  # set when the campaign changes state
    reason: str | None = None
    next_wave: int | None = None
    wave_done_at: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.send_update or self.redeliver_update or self.time_out or self.send_rollback
                    or self.redeliver_rollback or self.rollback_unanswered or self.skip or self.campaign_state or self.next_wave is not None
                    or self.wave_done_at is not None)


def assign_waves(device_ids: Iterable[str], waves: Sequence[int], seed: str) -> dict[str, int]:
    """Wave index per device. ``waves`` are cumulative percentages ending at 100; the order is a stable
    pseudo-random shuffle (sha256 of seed + device id), so a wave is a sample of the fleet, not the
    oldest devices. Every wave with a non-zero share gets at least one device while devices remain."""
    ordered = sorted(set(device_ids), key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).digest())
    n, out, start = len(ordered), {}, 0
    for i, pct in enumerate(waves):
        end = n if i == len(waves) - 1 else min(n, max(start + 1, math.ceil(pct * n / 100)))
        for d in ordered[start:end]:
            out[d] = i
        start = end
    return out


def validate_waves(waves: Sequence[int]) -> str | None:
    """A problem with the wave list, or None."""
    if not waves:
        return "waves must not be empty"
    if any(not 0 < w <= 100 for w in waves):
        return "each wave is a cumulative percentage in 1..100"
    if list(waves) != sorted(set(waves)):
        return "waves must be strictly increasing cumulative percentages"
    if waves[-1] != 100:
        return "the last wave must be 100"
    return None


def operator_action(state: str, action: str) -> str:
    """The campaign state after an operator's pause / resume / cancel."""
    allowed = {("running", "pause"): "paused", ("paused", "resume"): "running",
               ("running", "cancel"): "cancelled", ("paused", "cancel"): "cancelled"}
    try:
        return allowed[(state, action)]
    except KeyError:
        raise InvalidTransitionError(f"cannot {action} a campaign that is {state}") from None


def cancel_jobs(jobs: Iterable[JobView]) -> tuple[list[str], list[str]]:
    """On cancel: ``(to_cancel, to_tell)``. Pending jobs are dropped; jobs sent but not started are
    dropped and the device is told; jobs already downloading or installing run to their end."""
    to_cancel, to_tell = [], []
    for j in jobs:
        if j.state == "pending":
            to_cancel.append(j.device_id)
        elif j.state == "sent":
            to_cancel.append(j.device_id)
            to_tell.append(j.device_id)
    return to_cancel, to_tell


def apply_report(state: str, kind: str, reported: str) -> str | None:
    """A device's report about a job command of ``kind`` (update | rollback | cancel): the job's new
    state, or None to ignore it (duplicates, reports arriving out of order, answers too late to matter)."""
    if kind == "rollback":
        if state != "rollback_sent":
            return None
        return {"succeeded": "rolled_back", "failed": "rollback_failed"}.get(reported)
    if kind == "cancel":
        return None  # the job stays cancelled; a device already installing reports on the update command
    if reported not in REPORTABLE:
        return None
    if state == "cancelled" or state == "timed_out":
        # a device that was cancelled mid-delivery or went silent may still finish: report the truth
        return reported
    if state not in ACTIVE:
        return None
    if reported == "failed":
        return "failed"
    return reported if _ORDER[reported] > _ORDER[state] else None


def plan_tick(c: CampaignView, jobs: Sequence[JobView], now: float) -> TickPlan:
    plan = TickPlan()
    wants_rollback = {"failed"} if c.rollback != "none" else set()
    if c.rollback == "failed_or_silent":
        wants_rollback.add("timed_out")
    for j in jobs:
        if j.state in ACTIVE and c.state != "cancelled" and j.sent_at is not None \
                and now - j.sent_at >= c.device_deadline_s:
            plan.time_out.append(j.device_id)
            if "timed_out" in wants_rollback:
                plan.send_rollback.append(j.device_id)
        elif j.state in wants_rollback:
            plan.send_rollback.append(j.device_id)
        elif j.state == "rollback_sent" and j.rollback_sent_at is not None \
                and now - j.rollback_sent_at >= c.device_deadline_s:
            plan.rollback_unanswered.append(j.device_id)
        elif j.state == "rollback_sent" and _due(j, now, c.redeliver_s):
            plan.redeliver_rollback.append(j.device_id)
        elif j.state == "sent" and c.state in ("running", "paused") and _due(j, now, c.redeliver_s):
            plan.redeliver_update.append(j.device_id)
    if c.state != "running":
        return plan

    timed_out = set(plan.time_out)
    started = [j for j in jobs if j.wave <= c.current_wave]
    failures = count_failures(started, timed_out)
    if started and (failures - c.failure_baseline) / len(started) > c.failure_threshold:
        plan.campaign_state = "paused" if c.on_threshold == "pause" else "aborted"
        plan.reason = (f"failure threshold crossed: {failures} of {len(started)} devices in waves "
                       f"1..{c.current_wave + 1} failed (threshold {c.failure_threshold:.0%})")
        if plan.campaign_state == "aborted":
            plan.skip = [j.device_id for j in jobs if j.state == "pending"]
        return plan

    current = [j for j in jobs if j.wave == c.current_wave]
    slots = c.max_concurrent - sum(1 for j in jobs if j.state in DOWNLOAD_SLOTS and j.device_id not in timed_out)
    if slots > 0:
        plan.send_update = [j.device_id for j in current if j.state == "pending"][:slots]

    wave_done = all(j.state in TERMINAL or j.device_id in timed_out for j in current) and not plan.send_update
    if not wave_done:
        return plan
    done_at = c.wave_done_at if c.wave_done_at is not None else now
    if c.wave_done_at is None:
        plan.wave_done_at = now
    if now - done_at >= c.soak_s:
        if c.current_wave + 1 >= c.wave_count:
            plan.campaign_state, plan.reason = "completed", None
        else:
            plan.next_wave = c.current_wave + 1
    return plan


def count_failures(jobs: Iterable[JobView], also: set[str] | frozenset[str] = frozenset()) -> int:
    return sum(1 for j in jobs if j.state in FAILURES or j.device_id in also)


def _due(j: JobView, now: float, every_s: int) -> bool:
    return j.last_sent_at is None or now - j.last_sent_at >= every_s
