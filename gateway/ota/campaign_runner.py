"""The campaign driver (adr/0081): a thread beside the API that, every tick, plans each running
campaign with the pure state machine and applies the plan, and a Kafka consumer that turns devices'
``CommandAck`` reports into job states.

All state is in Postgres, so a restarted gateway resumes every campaign where it stood; the ack consumer
commits its offsets only after a report is stored, so reports sent while the gateway was down are read
on start. Several gateway replicas may run drivers: ``FOR UPDATE SKIP LOCKED`` on the campaign row lets
one of them work a campaign per tick. A command is recorded and written to the transactional outbox in the
same transaction as the job change (adr/0108), so it reaches Kafka exactly when that change commits and a
device's answer always finds its job; a device that does not answer is redelivered after ``redeliver_s``.
"""

from __future__ import annotations

import logging
import threading
import time

from gateway import outbox
from gateway.db.session import Database
from runtime.kafka import AUTO_COMMIT_STORED, KafkaLike, clients
from schemas import codec, device_key, topics

from . import campaigns as store
from . import jobs
from .campaign_state import ACTIVE, apply_report, plan_tick
from .download_links import DownloadLinks
from .releases import get_release

log = logging.getLogger(__name__)

# Commands go to the command agent's request topic when it exists (issue 5), else straight to delivery.
REQUEST_TOPIC = getattr(topics, "COMMAND_REQUESTS", topics.COMMANDS).name


class CampaignRunner:
    """:param db: the gateway's database (application role; tenant transactions only).
    :param kafka: the process's Kafka clients (``settings.kafka``; a bootstrap string in tests).
    :param links: issues each job's per-device download link.
    :param base_url: how devices reach the gateway (``…/v1/firmware/download/<token>``).
    :param tick_s: how often campaigns are planned.
    :param link_ttl_s: lifetime of a download link (a redelivered job carries a fresh one)."""

    def __init__(self, db: Database, kafka: KafkaLike, links: DownloadLinks, base_url: str, *, tick_s: float = 1.0,
                 link_ttl_s: int = 3600, group_id: str = "fleetstream-ota"):
        self.db, self.links, self.base_url = db, links, base_url.rstrip("/")
        self.tick_s, self.link_ttl_s = tick_s, link_ttl_s
        self._consumer = clients(kafka).consumer(group_id, AUTO_COMMIT_STORED)
        self._command_codec, self._ack_codec = codec("command"), codec("command_ack")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._tick_loop, name="ota-campaigns", daemon=True),
                         threading.Thread(target=self._ack_loop, name="ota-acks", daemon=True)]

    def start(self) -> CampaignRunner:
        self._consumer.subscribe([topics.COMMAND_ACKS.name])
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(15)

    # -- planning ---------------------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick_once()
            except Exception:
                log.exception("campaign tick failed; retrying next tick")

    def tick_once(self) -> None:
        with self.db.anonymous_tx() as conn:
            due = conn.execute("select * from ota_campaigns_to_drive()").fetchall()
        for row in due:
            self.drive(str(row["tenant_id"]), str(row["campaign_id"]))

    def drive(self, tenant_id: str, campaign_id: str) -> None:
        outgoing: list[dict] = []
        with self.db.tenant_tx(tenant_id) as conn:
            c = conn.execute("select * from ota_campaigns where tenant_id = %s and id = %s for update skip locked",
                             (tenant_id, campaign_id)).fetchone()
            if c is None:
                return  # another driver holds it this tick
            rows = store.list_jobs(conn, tenant_id=tenant_id, campaign_id=campaign_id)
            plan = plan_tick(store.campaign_view(c), [store.job_view(r) for r in rows], time.time())
            if plan.empty:
                return
            release = get_release(conn, tenant_id=tenant_id, device_type=c["device_type"], version=c["target_version"])
            kw = {"tenant_id": tenant_id, "campaign_id": campaign_id}
            store.set_jobs(conn, **kw, device_ids=plan.time_out, state="timed_out", from_states=ACTIVE,
                           reason=f"no final report within {c['device_deadline_s']} s")
            updates = store.set_jobs(conn, **kw, device_ids=plan.send_update, state="sent", from_states=["pending"],
                                     sent=True, first_send=True)
            updates += store.set_jobs(conn, **kw, device_ids=plan.redeliver_update, state="sent",
                                      from_states=["sent"], sent=True)
            rollbacks = store.set_jobs(conn, **kw, device_ids=plan.send_rollback, state="rollback_sent",
                                       from_states=["failed", "timed_out"], sent=True, first_rollback=True)
            rollbacks += store.set_jobs(conn, **kw, device_ids=plan.redeliver_rollback, state="rollback_sent",
                                        from_states=["rollback_sent"], sent=True)
            store.set_jobs(conn, **kw, device_ids=plan.rollback_unanswered, state="rollback_failed",
                           from_states=["rollback_sent"], reason=f"no answer to the rollback within {c['device_deadline_s']} s")
            store.set_jobs(conn, **kw, device_ids=plan.skip, state="skipped", from_states=["pending"],
                           reason="campaign aborted")
            outgoing = [self._update(tenant_id, j["device_id"], c, release) for j in updates]
            outgoing += [self._rollback(conn, tenant_id, j["device_id"], c, j) for j in rollbacks]
            changes: dict = {}
            if plan.campaign_state:
                changes.update(state=plan.campaign_state, reason=plan.reason)
            if plan.wave_done_at is not None:
                changes["wave_done_at"] = _ts(plan.wave_done_at)
            if plan.next_wave is not None:
                changes.update(current_wave=plan.next_wave, wave_started_at=_ts(time.time()), wave_done_at=None)
            if changes:
                store.set_campaign(conn, **kw, **changes)
                if plan.campaign_state:
                    log.info("campaign %s is now %s%s", campaign_id, plan.campaign_state,
                             f": {plan.reason}" if plan.reason else "")
            store.record_commands(conn, **kw, commands=[(o["command_id"], o["device_id"], jobs.KIND_BY_NAME[o["name"]])
                                                        for o in outgoing])
            self.enqueue(conn, outgoing)

    def enqueue(self, conn, commands: list[dict]) -> None:
        """The commands into the outbox of the caller's transaction: produced once it commits (adr/0108)."""
        for cmd in commands:
            outbox.enqueue(conn, tenant_id=cmd["tenant_id"], topic=REQUEST_TOPIC,
                           key=device_key(cmd["tenant_id"], cmd["device_id"]), value=self._command_codec.encode(cmd))

    def _link(self, tenant_id: str, device_id: str, release: dict) -> tuple[str, int]:
        token = self.links.issue(tenant_id=tenant_id, device_id=device_id, sha256=release["sha256"],
                                 ttl_s=self.link_ttl_s)
        return f"{self.base_url}/v1/firmware/download/{token}", int(time.time()) + self.link_ttl_s

    def _update(self, tenant_id: str, device_id: str, c: dict, release: dict) -> dict:
        url, expires = self._link(tenant_id, device_id, release)
        params = {"campaign_id": str(c["id"]), **jobs.release_params(release, url, expires)}
        return jobs.command(tenant_id=tenant_id, device_id=device_id, name=jobs.UPDATE, params=params,
                            ack_timeout_s=c["redeliver_s"])

    def _rollback(self, conn, tenant_id: str, device_id: str, c: dict, job: dict) -> dict:
        params: dict = {"campaign_id": str(c["id"]), "version": job["from_version"],
                        "reason": job["reason"] or job["state"]}
        previous = job["from_version"] and get_release(conn, tenant_id=tenant_id, device_type=c["device_type"],
                                                       version=job["from_version"])
        if previous:  # the device may no longer hold its previous image: let it download it again
            url, expires = self._link(tenant_id, device_id, previous)
            params.update(jobs.release_params(previous, url, expires))
        return jobs.command(tenant_id=tenant_id, device_id=device_id, name=jobs.ROLLBACK, params=params,
                            ack_timeout_s=c["redeliver_s"])

    def cancel(self, tenant_id: str, campaign_id: str, tell: list[str]) -> list[dict]:
        """Commands telling devices that a job they have not started is withdrawn (the caller records and
        ``enqueue``s them in its transaction)."""
        return [jobs.command(tenant_id=tenant_id, device_id=d, name=jobs.CANCEL, params={"campaign_id": campaign_id},
                             ack_timeout_s=30) for d in tell]

    # -- device reports ---------------------------------------------------------------------------------
    def _ack_loop(self) -> None:
        c = self._consumer
        try:
            while not self._stop.is_set():
                m = c.poll(0.5)
                if m is None or m.error():
                    continue
                for attempt in range(5):
                    try:
                        self.handle_ack(m.value())
                        break
                    except Exception:
                        log.exception("storing an OTA report failed (attempt %d)", attempt + 1)
                        if self._stop.wait(1.0):
                            return
                c.store_offsets(m)
        finally:
            c.close()

    def handle_ack(self, raw: bytes) -> None:
        try:
            ack = self._ack_codec.decode(raw)
        except Exception:
            return  # not ours to judge: the command agent dead-letters bad records
        if not ack["command_id"].startswith(jobs.COMMAND_PREFIX):
            return
        reported, reason, progress, running = jobs.parse_report(ack)
        tenant_id = ack["tenant_id"]
        with self.db.tenant_tx(tenant_id) as conn:
            cmd = store.find_command(conn, tenant_id=tenant_id, command_id=ack["command_id"])
            if cmd is None or cmd["device_id"] != ack["device_id"]:
                return
            job = store.get_job(conn, tenant_id=tenant_id, campaign_id=cmd["campaign_id"], device_id=ack["device_id"])
            if job is None:
                return
            new = apply_report(job["state"], cmd["kind"], reported) if reported else None
            if new is None and not progress and not running:
                return
            store.record_report(conn, tenant_id=tenant_id, campaign_id=cmd["campaign_id"], device_id=ack["device_id"],
                                state=new, reason=reason if new in ("failed", "rollback_failed") else None,
                                progress=progress if new is not None or cmd["kind"] == "update" else {},
                                running_version=running if cmd["kind"] == "update" else None)


def _ts(epoch: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC)
