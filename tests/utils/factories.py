"""Test factories: tenants, devices with certificates, tokens, MQTT device clients."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from gateway.admin import Admin
from runtime.settings import Settings


@dataclass
class TestTenant:
    tenant_id: str
    name: str
    client_id: str
    client_secret: str

    def token(self, gateway: httpx.Client, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        if scope:
            data["scope"] = scope
        r = gateway.post("/v1/oauth/token", data=data)
        r.raise_for_status()
        return r.json()["access_token"]


@dataclass
class TestDevice:
    tenant_id: str
    device_id: str
    cert_dir: Path


class Factory:
    def __init__(self, s: Settings):
        self.s = s
        self.admin = Admin(s)

    def close(self) -> None:
        self.admin.close()

    def tenant(self, prefix: str = "t") -> TestTenant:
        out = self.admin.create_tenant(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return TestTenant(out["tenant_id"], out["name"], out["client_id"], out["client_secret"])

    def device(self, tenant: TestTenant, device_id: str | None = None, **kw) -> TestDevice:
        device_id = device_id or f"dev-{uuid.uuid4().hex[:8]}"
        cert_dir = self.s.root / "test-devices" / tenant.tenant_id / device_id
        self.admin.create_device(tenant.tenant_id, device_id, cert_dir=cert_dir, **kw)
        return TestDevice(tenant.tenant_id, device_id, cert_dir)

    def mqtt_client(self, device: TestDevice, *, protocol=mqtt.MQTTv5, client_id: str | None = None,
                    connect: bool = True) -> mqtt.Client:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(device.cert_dir / "ca.crt"))
        ctx.load_cert_chain(str(device.cert_dir / "device.crt"), str(device.cert_dir / "device.key"))
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{device.tenant_id}.{device.device_id}",
                        protocol=protocol)
        c.tls_set_context(ctx)
        if connect:
            connected = threading.Event()
            c.on_connect = lambda *_: connected.set()
            c.connect(self.s.mqtt_broker_host, self.s.mqtt_tls_port, keepalive=30)
            c.loop_start()
            assert connected.wait(10), "device could not connect to the broker"
        return c


def publish_json(client: mqtt.Client, topic: str, payload, qos: int = 1) -> mqtt.MQTTMessageInfo:
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    info = client.publish(topic, body, qos=qos)
    info.wait_for_publish(10)
    return info


def wait_for(fn: Callable, timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
