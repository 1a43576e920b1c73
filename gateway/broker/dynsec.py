"""Per-device broker authorisation through Mosquitto's dynamic-security plugin (adr/0003).

A device's certificate CN is ``<tenant_id>.<device_id>`` (the broker uses it as the username); its role
allows exactly ``fs/<tenant>/<device>/#``. Disabling or deleting the client drops a live session at once.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt

from connectors.mqtt.namespace import device_root

CONTROL = "$CONTROL/dynamic-security/v1"


class BrokerAuthError(RuntimeError):
    pass


def device_username(tenant_id: str, device_id: str) -> str:
    return f"{tenant_id}.{device_id}"


def device_acls(tenant_id: str, device_id: str) -> list[dict]:
    root = device_root(tenant_id, device_id)
    return [{"acltype": t, "topic": f"{root}/#", "priority": 0, "allow": True}
            for t in ("publishClientSend", "publishClientReceive", "subscribePattern", "unsubscribePattern")]


class DynSecAdmin:
    """A small request/response client for the plugin's control topic; thread-safe, one connection."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext, client_id: str = "fleetstream-dynsec-admin"):
        self._pending: dict[str, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-{uuid.uuid4().hex[:6]}",
                        protocol=mqtt.MQTTv5)
        c.tls_set_context(tls)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{CONTROL}/response", qos=1)
        c.on_subscribe = lambda *_: self._ready.set()
        c.on_message = self._on_message
        c.connect(host, port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self._ready.wait(10):
            raise BrokerAuthError("could not reach the broker's dynamic-security control topic")
        self._serial = threading.Lock()

    def _on_message(self, _c, _u, msg) -> None:
        for resp in json.loads(msg.payload).get("responses", []):
            waiter = self._pending.get(resp.get("correlationData", ""))
            if waiter:
                waiter[1].append(resp)
                waiter[0].set()

    def call(self, *commands: dict, timeout: float = 5.0) -> list[dict]:
        results = []
        with self._serial:  # the plugin answers in order; one request in flight keeps errors attributable
            for cmd in commands:
                corr = uuid.uuid4().hex
                ev, box = threading.Event(), []
                self._pending[corr] = (ev, box)
                try:
                    self.client.publish(CONTROL, json.dumps({"commands": [{**cmd, "correlationData": corr}]}), qos=1)
                    if not ev.wait(timeout):
                        raise BrokerAuthError(f"no answer from the broker for {cmd['command']}")
                finally:
                    self._pending.pop(corr, None)
                results.append(box[0])
        return results

    def authorise_device(self, tenant_id: str, device_id: str) -> None:
        user = device_username(tenant_id, device_id)
        role = f"device:{user}"
        for resp in self.call({"command": "createRole", "rolename": role, "acls": device_acls(tenant_id, device_id)},
                              {"command": "createClient", "username": user, "roles": [{"rolename": role}]},
                              {"command": "enableClient", "username": user}):
            err = resp.get("error")
            if err and "already exists" not in err:
                raise BrokerAuthError(f"{resp['command']}: {err}")

    def revoke_device(self, tenant_id: str, device_id: str) -> None:
        """Disables the client: the broker drops its live session and refuses reconnects."""
        user = device_username(tenant_id, device_id)
        (resp,) = self.call({"command": "disableClient", "username": user})
        if resp.get("error") and "not found" not in resp["error"].lower():
            raise BrokerAuthError(f"disableClient: {resp['error']}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
