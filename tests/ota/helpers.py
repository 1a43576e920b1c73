"""Shared steps of the OTA tests: upload a release, create a campaign, poll its status."""

from __future__ import annotations

import os
import uuid

from tests.utils.factories import wait_for


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def random_image(size: int = 50_000) -> bytes:
    return b"FSFW" + os.urandom(size - 4)


def upload(gateway, token: str, device_type: str, version: str, data: bytes):
    return gateway.post("/v1/firmware", headers=auth(token), data={"device_type": device_type, "version": version},
                        files={"file": ("fw.bin", data, "application/octet-stream")})


def device_type() -> str:
    return f"valve-{uuid.uuid4().hex[:6]}"


def campaign_state(gateway, token: str, cid: str) -> dict:
    r = gateway.get(f"/v1/ota/campaigns/{cid}", headers=auth(token))
    r.raise_for_status()
    return r.json()


def jobs(gateway, token: str, cid: str) -> dict[str, dict]:
    r = gateway.get(f"/v1/ota/campaigns/{cid}/devices", headers=auth(token))
    r.raise_for_status()
    return {j["device_id"]: j for j in r.json()["data"]}


def wait_campaign(gateway, token: str, cid: str, states: set[str], timeout: float = 90) -> dict:
    return wait_for(lambda: (c := campaign_state(gateway, token, cid))["state"] in states and c, timeout=timeout,
                    interval=0.5, what=f"campaign {cid} to reach {states}")
