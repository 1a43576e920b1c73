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

    def call(self, *commands: dict, timeout: float = 30.0, batch: int = 200) -> list[dict]:
        """Sends commands in messages of up to ``batch`` and returns one response per command, in order.

        The plugin answers a message only when all its commands are done, and it rewrites its whole JSON
        file as it goes (slower as the client list grows): the wait grows with the batch."""
        results: list[dict] = []
        with self._serial:  # the plugin answers in order; one request in flight keeps errors attributable
            for i in range(0, len(commands), batch):
                chunk = commands[i:i + batch]
                corrs = [uuid.uuid4().hex for _ in chunk]
                waiters = {c: (threading.Event(), []) for c in corrs}
                self._pending.update(waiters)
                try:
                    body = {"commands": [{**cmd, "correlationData": c} for cmd, c in zip(chunk, corrs, strict=True)]}
                    self.client.publish(CONTROL, json.dumps(body), qos=1)
                    for cmd, c in zip(chunk, corrs, strict=True):
                        ev, box = waiters[c]
                        if not ev.wait(timeout + 0.5 * len(chunk)):
                            raise BrokerAuthError(f"no answer from the broker for {cmd['command']}")
                        results.append(box[0])
                finally:
                    for c in corrs:
                        self._pending.pop(c, None)
        return results

    def authorise_device(self, tenant_id: str, device_id: str) -> None:
        self.authorise_devices(tenant_id, [device_id])

    def authorise_devices(self, tenant_id: str, device_ids: list[str]) -> None:
        """Creates (idempotently) each device's role and client and enables it; one round trip per batch."""
        cmds = []
        for device_id in device_ids:
            user = device_username(tenant_id, device_id)
            role = f"device:{user}"
            # two commands: the plugin rewrites its whole JSON file after each one (a new client is enabled)
            cmds += [{"command": "createRole", "rolename": role, "acls": device_acls(tenant_id, device_id)},
                     {"command": "createClient", "username": user, "roles": [{"rolename": role}]}]
        for resp in self.call(*cmds):
            err = resp.get("error")
            if err and "already" not in err.lower():
                raise BrokerAuthError(f"{resp['command']}: {err}")

    def revoke_device(self, tenant_id: str, device_id: str) -> None:
        """Disables the client, which drops its live session, and takes its role away.

        Mosquitto 2.0 runs no authentication plugin for certificate identities (``use_identity_as_username``),
        so a reconnect may complete CONNECT; the client entry stays (an identity dynsec does not know is
        not checked at all) but without its role the default-deny ACLs refuse every publish (PUBACK 135)
        and deliver nothing (adr/0033)."""
        user = device_username(tenant_id, device_id)
        for resp in self.call({"command": "disableClient", "username": user},
                              {"command": "removeClientRole", "username": user, "rolename": f"device:{user}"}):
            if resp.get("error") and "not found" not in resp["error"].lower():
                raise BrokerAuthError(f"{resp['command']}: {resp['error']}")

    def enable_device(self, tenant_id: str, device_id: str) -> None:
        """Resume after a suspension: the role back, the client enabled."""
        user = device_username(tenant_id, device_id)
        role = f"device:{user}"
        for resp in self.call({"command": "createRole", "rolename": role, "acls": device_acls(tenant_id, device_id)},
                              {"command": "createClient", "username": user, "roles": [{"rolename": role}]},
                              {"command": "addClientRole", "username": user, "rolename": role},
                              {"command": "enableClient", "username": user}):
            err = resp.get("error")
            if err and "already" not in err.lower():
                raise BrokerAuthError(f"{resp['command']}: {err}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
