"""The campaign state machine as an operator relies on it: waves sample the fleet, the rollout stops
when failures cross the threshold, concurrency is bounded, soak time is honoured, late or out-of-order
device reports never move a job backwards. Pure functions: no stack needed."""

from __future__ import annotations

import pytest

from gateway.ota.campaign_state import (
    CampaignView,
    InvalidTransitionError,
    JobView,
    apply_report,
    assign_waves,
    cancel_jobs,
    operator_action,
    plan_tick,
    validate_waves,
)


def campaign(**kw) -> CampaignView:
    base = dict(state="running", current_wave=0, wave_count=2, wave_started_at=0.0, wave_done_at=None, soak_s=60,
                max_concurrent=10, failure_threshold=0.2, on_threshold="abort", rollback="failed",
                device_deadline_s=600, redeliver_s=30)
    return CampaignView(**(base | kw))


def test_waves_are_cumulative_percentages_of_a_stable_sample():
    devices = [f"d{i}" for i in range(100)]
    waves = assign_waves(devices, [1, 10, 50, 100], seed="s")
    sizes = [sum(1 for w in waves.values() if w == i) for i in range(4)]
    assert sizes == [1, 9, 40, 50]
    assert assign_waves(devices, [1, 10, 50, 100], seed="s") == waves  # stable for a campaign
    assert assign_waves(devices, [1, 10, 50, 100], seed="other") != waves  # a sample, not the oldest devices


def test_a_small_fleet_still_gets_a_device_in_every_early_wave():
    waves = assign_waves(["a", "b", "c"], [1, 10, 100], seed="x")
    assert sorted(waves.values()) == [0, 1, 2]


@pytest.mark.parametrize("waves,problem", [([], "empty"), ([10, 5, 100], "increasing"), ([10, 50], "last wave"),
                                           ([0, 100], "1..100")])
def test_bad_wave_lists_are_refused_with_a_reason(waves, problem):
    assert problem in validate_waves(waves)


def test_first_tick_sends_only_as_many_jobs_as_concurrent_downloads_allow():
    jobs = [JobView(f"d{i}", 0, "pending") for i in range(5)] + [JobView("late", 1, "pending")]
    plan = plan_tick(campaign(max_concurrent=2), jobs, now=100)
    assert plan.send_update == ["d0", "d1"]
    assert plan.campaign_state is None and plan.next_wave is None


def test_devices_past_downloading_free_their_slot():
    jobs = [JobView("a", 0, "installing", 1, 1), JobView("b", 0, "downloading", 1, 1), JobView("c", 0, "pending")]
    assert plan_tick(campaign(max_concurrent=2), jobs, now=100).send_update == ["c"]


def test_next_wave_starts_only_after_the_soak_time():
    jobs = [JobView("a", 0, "succeeded", 1, 1), JobView("b", 1, "pending")]
    first = plan_tick(campaign(), jobs, now=100)
    assert first.wave_done_at == 100 and first.next_wave is None and not first.send_update
    soaking = plan_tick(campaign(wave_done_at=100), jobs, now=130)
    assert soaking.next_wave is None
    assert plan_tick(campaign(wave_done_at=100), jobs, now=160).next_wave == 1


def test_last_wave_done_completes_the_campaign():
    jobs = [JobView("a", 0, "succeeded", 1, 1), JobView("b", 1, "succeeded", 1, 1)]
    plan = plan_tick(campaign(current_wave=1, wave_done_at=0, soak_s=0), jobs, now=10)
    assert plan.campaign_state == "completed"


def test_crossing_the_failure_threshold_aborts_and_skips_later_waves():
    jobs = [JobView("a", 0, "failed", 1, 1), JobView("b", 0, "succeeded", 1, 1), JobView("c", 1, "pending")]
    plan = plan_tick(campaign(failure_threshold=0.4), jobs, now=10)
    assert plan.campaign_state == "aborted" and "1 of 2" in plan.reason
    assert plan.skip == ["c"] and not plan.send_update
    assert plan.send_rollback == ["a"]  # the failed device is told to return to its previous version


def test_threshold_can_pause_instead_and_resume_accepts_past_failures():
    jobs = [JobView("a", 0, "failed", 1, 1), JobView("b", 0, "pending")]
    assert plan_tick(campaign(on_threshold="pause", rollback="none"), jobs, now=10).campaign_state == "paused"
    resumed = plan_tick(campaign(failure_baseline=1, rollback="none"), jobs, now=10)
    assert resumed.campaign_state is None and resumed.send_update == ["b"]


def test_silent_devices_time_out_and_count_as_failures_with_rollback_when_asked():
    jobs = [JobView("a", 0, "sent", sent_at=0, last_sent_at=0), JobView("b", 0, "succeeded", 0, 0)]
    plan = plan_tick(campaign(rollback="failed_or_silent", device_deadline_s=60, failure_threshold=0.6), jobs, now=61)
    assert plan.time_out == ["a"] and plan.send_rollback == ["a"]
    assert plan.campaign_state is None  # 1 of 2 is under 60 %
    assert plan_tick(campaign(rollback="failed", device_deadline_s=60, failure_threshold=0.6), jobs,
                     now=61).send_rollback == []


def test_a_job_not_picked_up_is_redelivered_until_the_deadline():
    jobs = [JobView("a", 0, "sent", sent_at=0, last_sent_at=0)]
    assert plan_tick(campaign(redeliver_s=30), jobs, now=10).redeliver_update == []
    assert plan_tick(campaign(redeliver_s=30), jobs, now=31).redeliver_update == ["a"]
    assert plan_tick(campaign(state="paused", redeliver_s=30), jobs, now=31).redeliver_update == ["a"]
    assert plan_tick(campaign(state="cancelled", redeliver_s=30), jobs, now=31).redeliver_update == []


def test_paused_campaign_sends_no_new_jobs():
    assert plan_tick(campaign(state="paused"), [JobView("a", 0, "pending")], now=1).send_update == []


def test_reports_move_a_job_forward_only():
    assert apply_report("sent", "update", "downloading") == "downloading"
    assert apply_report("installing", "update", "downloading") is None  # late, out of order
    assert apply_report("installing", "update", "failed") == "failed"
    assert apply_report("succeeded", "update", "failed") is None
    assert apply_report("timed_out", "update", "succeeded") == "succeeded"  # silent, then finished after all
    assert apply_report("rollback_sent", "rollback", "succeeded") == "rolled_back"
    assert apply_report("rollback_sent", "update", "succeeded") is None
    assert apply_report("sent", "update", "bogus") is None


def test_operator_actions_and_cancel():
    assert operator_action("running", "pause") == "paused"
    assert operator_action("paused", "resume") == "running"
    assert operator_action("paused", "cancel") == "cancelled"
    with pytest.raises(InvalidTransitionError):
        operator_action("aborted", "resume")
    drop, tell = cancel_jobs([JobView("p", 1, "pending"), JobView("s", 0, "sent"), JobView("i", 0, "installing")])
    assert drop == ["p", "s"] and tell == ["s"]


def test_an_unanswered_rollback_is_redelivered_until_the_deadline_then_given_up():
    j = JobView("a", 0, "rollback_sent", sent_at=0, last_sent_at=100, rollback_sent_at=100)
    c = campaign(device_deadline_s=600, redeliver_s=30)
    assert plan_tick(c, [j], now=120).redeliver_rollback == []
    assert plan_tick(c, [j], now=131).redeliver_rollback == ["a"]
    late = plan_tick(c, [j], now=701)
    assert late.rollback_unanswered == ["a"] and late.redeliver_rollback == []
