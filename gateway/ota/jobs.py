"""The commands a campaign sends to devices (docs/ota-device-contract.md): ``ota.update``,
``ota.rollback`` and ``ota.cancel``, as Command records for the command agent (adr/0052).

Every delivery gets a fresh command id (``ota-<hex>``), so the command agent treats a redelivery to a
device that was offline as a new command; the device recognises the job by ``campaign_id`` and
``version`` and handles a repeat idempotently.
"""

from __future__ import annotations

import json
import time
import uuid

UPDATE, ROLLBACK, CANCEL = "ota.update", "ota.rollback", "ota.cancel"
KIND_BY_NAME = {UPDATE: "update", ROLLBACK: "rollback", CANCEL: "cancel"}
COMMAND_PREFIX = "ota-"


def new_command_id() -> str:
    return COMMAND_PREFIX + uuid.uuid4().hex


def release_params(release: dict, url: str, url_expires_at: int) -> dict:
    return {"version": release["version"], "device_type": release["device_type"], "url": url,
            "url_expires_at": url_expires_at, "size": release["size"], "sha256": release["sha256"],
            "manifest": release["manifest_json"], "signature": release["signature"], "key_id": release["key_id"]}


def command(*, tenant_id: str, device_id: str, name: str, params: dict, ack_timeout_s: int) -> dict:
    """One delivery attempt is enough for the command agent: the campaign driver redelivers itself."""
    return {"tenant_id": tenant_id, "device_id": device_id, "command_id": new_command_id(), "name": name,
            "params_json": json.dumps(params, separators=(",", ":")), "created_at": int(time.time() * 1000),
            "timeout_ms": ack_timeout_s * 1000, "expires_at": None, "attempt": 0, "idempotency_key": None,
            "protocol": None, "max_attempts": 1}


def parse_report(ack: dict) -> tuple[str | None, str | None, dict, str | None]:
    """A CommandAck about an OTA command → ``(reported_state, reason, progress, running_version)``.

    Progress rides in ``result_json`` (``{"state": "downloading", "bytes": 1024, ...}``); a bare
    SUCCEEDED / FAILED without one means succeeded / failed; SENT and a bare ACKNOWLEDGED only say the
    command arrived."""
    body: dict = {}
    if ack.get("result_json"):
        try:
            parsed = json.loads(ack["result_json"])
            body = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            body = {}
    state = body.get("state") if isinstance(body.get("state"), str) else None
    if state is None:
        state = {"SUCCEEDED": "succeeded", "FAILED": "failed"}.get(ack["status"])
    elif ack["status"] == "FAILED":
        state = "failed"
    reason = ack.get("reason") or (body.get("reason") if isinstance(body.get("reason"), str) else None)
    running = body.get("running_version") if isinstance(body.get("running_version"), str) else None
    progress = {k: v for k, v in body.items() if k in ("bytes", "total", "percent", "state")}
    return state, reason, progress, running
