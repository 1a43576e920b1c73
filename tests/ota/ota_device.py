"""A simulated OTA device: a real MQTT client with its certificate that follows
docs/ota-device-contract.md — receives jobs on ``fs/<t>/<d>/commands``, reports progress on
``commands/ack``, downloads with Range requests, verifies the signed manifest and the artifact, and
reports its running version in its shadow."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field

import httpx

from gateway.ota.signing import ManifestError, verify_artifact, verify_manifest
from schemas.namespace import device_topics


@dataclass
class Behaviour:
    fail_install: bool = False  # the flash write fails after a good download
    ignore_jobs: bool = False  # connected but never answers (a "silent" device)
    ignore_updates: bool = False  # silent about updates, still obeys rollback and cancel


@dataclass
class OtaDevice:
    """:param factory: the tests' factory (certificates, broker address).
    :param device: the registered test device.
    :param version: the firmware it runs now.
    :param public_key_pem: the tenant's manifest signing key, provisioned at manufacture."""

    factory: object
    device: object
    version: str
    public_key_pem: str
    device_type: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    received: list[dict] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    range_requests: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.topics = device_topics(self.device.tenant_id, self.device.device_id)
        self.client = None
        self._jobs: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None

    # -- connection -----------------------------------------------------------------------------------
    def connect(self) -> OtaDevice:
        c = self.factory.mqtt_client(self.device, connect=False)
        subscribed = threading.Event()
        c.on_connect = lambda cl, *_: cl.subscribe(self.topics["commands"], qos=1)
        c.on_subscribe = lambda *_: subscribed.set()
        c.on_message = lambda _c, _u, msg: self._jobs.put(json.loads(msg.payload))
        c.connect(self.factory.s.mqtt_broker_host, self.factory.s.mqtt_tls_port, keepalive=30)
        c.loop_start()
        assert subscribed.wait(15), "device could not subscribe to its commands"
        self.client = c
        self._publish(self.topics["shadow_reported"], {"state": {"firmware": {"version": self.version}}})
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()
        return self

    def disconnect(self) -> None:
        if self.client is not None:
            self._jobs.put(None)
            if self._worker:
                self._worker.join(30)
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def _publish(self, topic: str, body: dict) -> None:
        self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(15)

    def _ack(self, command_id: str, status: str, result: dict | None = None, reason: str | None = None) -> None:
        body: dict = {"command_id": command_id, "status": status}
        if result is not None:
            body["result"] = result
        if reason is not None:
            body["reason"] = reason
        self.reports.append(body)
        self._publish(self.topics["command_ack"], body)

    # -- jobs -----------------------------------------------------------------------------------------
    def _work(self) -> None:
        while (cmd := self._jobs.get()) is not None:
            self.received.append(cmd)
            if self.behaviour.ignore_jobs or (self.behaviour.ignore_updates and cmd["name"] == "ota.update"):
                continue
            handler = {"ota.update": self._update, "ota.rollback": self._rollback,
                       "ota.cancel": self._cancel}.get(cmd["name"])
            if handler is not None:
                handler(cmd["command_id"], cmd["params"])

    def _progress(self, cid: str, state: str, **extra) -> None:
        self._ack(cid, "acknowledged", {"state": state, "running_version": self.version, **extra})

    def _update(self, cid: str, p: dict) -> None:
        if p["version"] == self.version:  # a repeated job for what already runs: just confirm
            self._ack(cid, "succeeded", {"state": "succeeded", "running_version": self.version})
            return
        self._progress(cid, "downloading", bytes=0, total=p["size"])
        try:
            data = self._download(p["url"], p["size"])
        except httpx.HTTPError as exc:
            self._ack(cid, "failed", {"state": "failed", "running_version": self.version},
                      reason=f"download_failed: {exc}")
            return
        self._progress(cid, "downloaded", bytes=len(data), total=p["size"])
        self._progress(cid, "verifying")
        try:
            manifest = verify_manifest(p["manifest"], p["signature"], self.public_key_pem)
            if manifest["version"] != p["version"] or manifest["device_type"] != self.device_type:
                raise ManifestError("manifest is for another device type or version")
            verify_artifact(manifest, data)
        except ManifestError as exc:
            self._ack(cid, "failed", {"state": "failed", "running_version": self.version},
                      reason=f"verification_failed: {exc}")
            return
        self._progress(cid, "installing")
        if self.behaviour.fail_install:
            self._ack(cid, "failed", {"state": "failed", "running_version": self.version},
                      reason="install_failed: simulated flash write error")
            return
        self._progress(cid, "rebooting")
        self.version = p["version"]
        self._publish(self.topics["shadow_reported"], {"state": {"firmware": {"version": self.version}}})
        self._ack(cid, "succeeded", {"state": "succeeded", "running_version": self.version})

    def _download(self, url: str, size: int) -> bytes:
        """Two Range requests, as a device resuming after a dropped connection would make them."""
        half = max(size // 2, 1)
        parts = []
        with httpx.Client(timeout=30) as http:
            for rng in (f"bytes=0-{half - 1}", f"bytes={half}-"):
                if rng.endswith(f"={size}-"):
                    break
                r = http.get(url, headers={"Range": rng})
                r.raise_for_status()
                self.range_requests.append(f"{rng} -> {r.status_code}")
                parts.append(r.content)
        return b"".join(parts)

    def _rollback(self, cid: str, p: dict) -> None:
        if p.get("version"):
            self.version = p["version"]  # the A/B slot still holds it
        self._publish(self.topics["shadow_reported"], {"state": {"firmware": {"version": self.version}}})
        self._ack(cid, "succeeded", {"state": "succeeded", "running_version": self.version})

    def _cancel(self, cid: str, p: dict) -> None:
        self._ack(cid, "succeeded", {"state": "cancelled"})

    def names_received(self) -> list[str]:
        return [c["name"] for c in self.received]
