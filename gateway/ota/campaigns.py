"""Campaigns, their device jobs and the commands sent for them. Every function runs inside a tenant
transaction (``Database.tenant_tx``) and names the tenant explicitly as well."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg.types.json import Jsonb

from .campaign_state import CampaignView, JobView

CAMPAIGN_FIELDS = ("name", "device_type", "target_version", "waves", "soak_s", "max_concurrent", "failure_threshold",
                   "on_threshold", "rollback", "device_deadline_s", "redeliver_s")


def select_devices(conn: psycopg.Connection, *, tenant_id: str, device_type: str, tags: list[str]) -> list[str]:
    rows = conn.execute("select device_id from devices where tenant_id = %s and device_type = %s "
                        "and status in ('provisioned', 'active') and tags @> %s order by device_id",
                        (tenant_id, device_type, tags)).fetchall()
    return [r["device_id"] for r in rows]


def devices_of_type(conn: psycopg.Connection, *, tenant_id: str, device_type: str, device_ids: list[str]) -> list[str]:
    rows = conn.execute("select device_id from devices where tenant_id = %s and device_type = %s "
                        "and status in ('provisioned', 'active') and device_id = any(%s)",
                        (tenant_id, device_type, device_ids)).fetchall()
    return sorted(r["device_id"] for r in rows)


def busy_devices(conn: psycopg.Connection, *, tenant_id: str, device_ids: list[str]) -> list[str]:
    """Devices with an unfinished job in a campaign that is still running or paused."""
    rows = conn.execute(
        "select distinct j.device_id from ota_campaign_devices j join ota_campaigns c on c.id = j.campaign_id "
        "where j.tenant_id = %s and c.state in ('running', 'paused') and j.device_id = any(%s) "
        "and j.state in ('pending', 'sent', 'downloading', 'downloaded', 'verifying', 'installing', 'rebooting')",
        (tenant_id, device_ids)).fetchall()
    return sorted(r["device_id"] for r in rows)


def create_campaign(conn: psycopg.Connection, *, tenant_id: str, selector: dict, waves_by_device: dict[str, int],
                    **fields) -> dict:
    cols = ", ".join(CAMPAIGN_FIELDS)
    row = conn.execute(
        f"insert into ota_campaigns (tenant_id, selector, {cols}) values (%s, %s, {', '.join(['%s'] * len(CAMPAIGN_FIELDS))}) "
        "returning *", (tenant_id, Jsonb(selector), *(fields[f] for f in CAMPAIGN_FIELDS))).fetchone()
    with conn.cursor() as cur:
        cur.executemany("insert into ota_campaign_devices (tenant_id, campaign_id, device_id, wave) values (%s, %s, %s, %s)",
                        [(tenant_id, row["id"], d, w) for d, w in waves_by_device.items()])
    return row


def get_campaign(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str, lock: bool = False) -> dict | None:
    sql = "select * from ota_campaigns where tenant_id = %s and id = %s"
    return conn.execute(sql + (" for update" if lock else ""), (tenant_id, campaign_id)).fetchone()


def list_campaigns(conn: psycopg.Connection, *, tenant_id: str, limit: int = 100) -> list[dict]:
    return conn.execute("select * from ota_campaigns where tenant_id = %s order by created_at desc limit %s",
                        (tenant_id, limit)).fetchall()


def wave_counts(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str) -> list[dict]:
    return conn.execute("select wave, state, count(*)::int as n from ota_campaign_devices "
                        "where tenant_id = %s and campaign_id = %s group by wave, state order by wave, state",
                        (tenant_id, campaign_id)).fetchall()


def list_jobs(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str, state: str | None = None,
              wave: int | None = None) -> list[dict]:
    sql, args = "select * from ota_campaign_devices where tenant_id = %s and campaign_id = %s", [tenant_id, campaign_id]
    if state is not None:
        sql, args = sql + " and state = %s", [*args, state]
    if wave is not None:
        sql, args = sql + " and wave = %s", [*args, wave]
    return conn.execute(sql + " order by wave, device_id", args).fetchall()


def set_campaign(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str, **changes) -> dict:
    allowed = {"state", "reason", "current_wave", "wave_started_at", "wave_done_at", "failure_baseline"}
    assert set(changes) <= allowed, set(changes) - allowed
    sets = ", ".join(f"{k} = %s" for k in changes)
    return conn.execute(f"update ota_campaigns set {sets}, updated_at = now() where tenant_id = %s and id = %s "
                        "returning *", (*changes.values(), tenant_id, campaign_id)).fetchone()


def set_jobs(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str, device_ids: Iterable[str], state: str,
             from_states: Iterable[str], sent: bool = False, first_send: bool = False, first_rollback: bool = False,
             reason: str | None = None) -> list[dict]:
    """Moves jobs that are still in one of ``from_states`` (a device report may have moved a job since it
    was planned: that report wins) and returns the rows it moved, so only those get commands."""
    ids = list(device_ids)
    if not ids:
        return []
    extra = ""
    if sent:
        extra = ", attempts = attempts + 1, last_sent_at = now()"
        if first_send:
            extra += ", sent_at = now()"
        if first_rollback:
            extra += ", rollback_sent_at = now()"
    return conn.execute(
        f"update ota_campaign_devices set state = %s, reason = coalesce(%s, reason), updated_at = now(){extra} "
        "where tenant_id = %s and campaign_id = %s and device_id = any(%s) and state = any(%s) returning *",
        (state, reason, tenant_id, campaign_id, ids, list(from_states))).fetchall()


def record_commands(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str,
                    commands: list[tuple[str, str, str]]) -> None:
    """``commands``: (command_id, device_id, kind)."""
    if commands:
        with conn.cursor() as cur:
            cur.executemany("insert into ota_commands (tenant_id, command_id, campaign_id, device_id, kind) "
                            "values (%s, %s, %s, %s, %s)", [(tenant_id, cid, campaign_id, d, k) for cid, d, k in commands])


def find_command(conn: psycopg.Connection, *, tenant_id: str, command_id: str) -> dict | None:
    return conn.execute("select * from ota_commands where tenant_id = %s and command_id = %s",
                        (tenant_id, command_id)).fetchone()


def get_job(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str, device_id: str) -> dict | None:
    return conn.execute("select * from ota_campaign_devices where tenant_id = %s and campaign_id = %s "
                        "and device_id = %s for update", (tenant_id, campaign_id, device_id)).fetchone()


def record_report(conn: psycopg.Connection, *, tenant_id: str, campaign_id: str, device_id: str, state: str | None,
                  reason: str | None, progress: dict, running_version: str | None) -> None:
    conn.execute(
        "update ota_campaign_devices set state = coalesce(%s, state), reason = coalesce(%s, reason), "
        "progress = progress || %s, from_version = coalesce(from_version, %s), reported_at = now(), "
        "updated_at = now() where tenant_id = %s and campaign_id = %s and device_id = %s",
        (state, reason, Jsonb(progress), running_version, tenant_id, campaign_id, device_id))


def campaign_view(row: dict) -> CampaignView:
    return CampaignView(state=row["state"], current_wave=row["current_wave"], wave_count=len(row["waves"]),
                        wave_started_at=row["wave_started_at"].timestamp(),
                        wave_done_at=row["wave_done_at"].timestamp() if row["wave_done_at"] else None,
                        soak_s=row["soak_s"], max_concurrent=row["max_concurrent"],
                        failure_threshold=row["failure_threshold"], on_threshold=row["on_threshold"],
                        rollback=row["rollback"], device_deadline_s=row["device_deadline_s"],
                        redeliver_s=row["redeliver_s"], failure_baseline=row["failure_baseline"])


def job_view(row: dict) -> JobView:
    return JobView(row["device_id"], row["wave"], row["state"],
                   row["sent_at"].timestamp() if row["sent_at"] else None,
                   row["last_sent_at"].timestamp() if row["last_sent_at"] else None,
                   row["rollback_sent_at"].timestamp() if row["rollback_sent_at"] else None)

