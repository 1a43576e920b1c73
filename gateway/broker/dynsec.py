"""Per-device broker authorisation through Mosquitto's dynamic-security plugin (adr/0003, adr/0035).

A device's certificate CN is ``<tenant_id>.<device_id>`` (the broker uses it as the username); its role
allows exactly ``fs/<tenant>/<device>/#``. Disabling or deleting the client drops a live session at once.

Cost (measured on Mosquitto 2.0.11, adr/0035): the plugin rewrites its whole JSON file after *every*
command, not once per control message, and it does so on the broker's only thread. A command therefore
costs time proportional to the number of devices already known (~7 ms at 1k, ~35 ms at 5k, ~100 ms at
10k here), and a message of many commands stalls every session on the broker until it is done. Messages
are therefore bounded by the rewriting they cause (``MAX_REWRITE_PER_MESSAGE``), not by a command count.
For a fleet bootstrap, ``device_entries`` is written into the file before the broker starts instead
(``fleetstream.stack.mosquitto.seed_dynsec``).

Since adr/0171, a broker with the platform's access plugin (adr/0100) is told about devices instead: one
``register device <T>.<D>`` line each, a hash entry and an appended journal line in the plugin, O(1) per device,
thousands per control message. The plugin already confined a device to ``fs/<T>/<D>``; its known set adds
"and only if registered", which was all the per-device dynsec role still decided. Dynamic security keeps the
platform's identities and the devices provisioned into it before (they keep working: the plugin defers to it
for a device it does not know).
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt

from schemas.namespace import device_root

CONTROL = "$CONTROL/dynamic-security/v1"
# The platform's own access plugin (fleetstream/stack/mosquitto_access.c, adr/0100) answers on the same
# connection; gateway/broker/access.py speaks its line protocol.
ACCESS_CONTROL = "$CONTROL/fleetstream-access/v1"


class BrokerAuthError(RuntimeError):
    pass


def device_username(tenant_id: str, device_id: str) -> str:
    return f"{tenant_id}.{device_id}"


# Unsubscribing is allowed by the default ACL access (stack/mosquitto.py), so a device role carries three
# ACLs, not four: every byte of a role is rewritten on every later command (see above).
DEVICE_ACL_TYPES = ("publishClientSend", "publishClientReceive", "subscribePattern")
# Devices registered per access-plugin message: ~100 bytes a line, well under the broker's packet limit.
REGISTER_PER_MESSAGE = 1000
# Client entries' worth of file rewriting one control message may cause: ~10 µs each here, so ~2 s of a
# stalled broker at most (20 commands per message at 10k devices, 200 at 1k).
MAX_REWRITE_PER_MESSAGE = 200_000


def device_role(tenant_id: str, device_id: str) -> str:
    return f"device:{device_username(tenant_id, device_id)}"


def device_acls(tenant_id: str, device_id: str) -> list[dict]:
    root = device_root(tenant_id, device_id)
    return [{"acltype": t, "topic": f"{root}/#", "priority": 0, "allow": True} for t in DEVICE_ACL_TYPES]


def device_entries(tenant_id: str, device_id: str) -> tuple[dict, dict]:
    """The role and the client a device needs, in the plugin's file format and as command bodies."""
    role = device_role(tenant_id, device_id)
    return ({"rolename": role, "acls": device_acls(tenant_id, device_id)},
            {"username": device_username(tenant_id, device_id), "roles": [{"rolename": role}]})


def commands_per_message(known_devices: int) -> int:
    """How many commands one control message may carry when the broker already knows ``known_devices``."""
    return max(2, MAX_REWRITE_PER_MESSAGE // max(known_devices, 1))


class DynSecAdmin:
    """A small request/response client for the plugin's control topic; thread-safe, one connection."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext, client_id: str = "fleetstream-dynsec-admin"):
        self._pending: dict[str, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._serial = threading.Lock()
        self.access_available = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-{uuid.uuid4().hex[:6]}",
                        protocol=mqtt.MQTTv5)
        c.tls_set_context(tls)
        c.on_connect = lambda cl, *_: cl.subscribe([(f"{CONTROL}/response", 1), (f"{ACCESS_CONTROL}/response", 1)])
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.connect(host, port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self._ready.wait(10):
            raise BrokerAuthError("could not reach the broker's dynamic-security control topic")

    def _on_subscribe(self, _c, _u, _mid, reason_codes, _p) -> None:
        # a broker without the access plugin refuses that topic; dynamic security alone still works
        self.access_available = len(reason_codes) > 1 and not reason_codes[1].is_failure
        self._ready.set()

    def _on_message(self, _c, _u, msg) -> None:
        if msg.topic == f"{ACCESS_CONTROL}/response":  # "<correlation> ok|error …" per line
            for line in msg.payload.decode(errors="replace").splitlines():
                corr, _, rest = line.partition(" ")
                waiter = self._pending.get(corr)
                if waiter:
                    waiter[1].append(rest)
                    waiter[0].set()
            return
        for resp in json.loads(msg.payload).get("responses", []):
            waiter = self._pending.get(resp.get("correlationData", ""))
            if waiter:
                waiter[1].append(resp)
                waiter[0].set()

    def call_access(self, lines: list[str], timeout: float = 30.0) -> list[str]:
        """Sends ``<verb> <kind> <value>`` lines to the access plugin in one message; one answer per line
        (``ok <sessions closed>`` or ``error <why>``), in order."""
        corrs = [uuid.uuid4().hex for _ in lines]
        waiters = {c: (threading.Event(), []) for c in corrs}
        with self._serial:
            self._pending.update(waiters)
            try:
                self.client.publish(ACCESS_CONTROL, "\n".join(f"{c} {line}" for c, line in zip(corrs, lines, strict=True)),
                                    qos=1)
                out = []
                for c, line in zip(corrs, lines, strict=True):
                    ev, box = waiters[c]
                    if not ev.wait(timeout):
                        raise BrokerAuthError(f"no answer from the broker's access plugin for {line!r}")
                    out.append(box[0])
                return out
            finally:
                for c in corrs:
                    self._pending.pop(c, None)

    def call(self, *commands: dict, timeout: float = 30.0, batch: int = 200) -> list[dict]:
        """Sends commands in messages of up to ``batch`` and returns one response per command, in order."""
        return self.call_chunks([list(commands[i:i + batch]) for i in range(0, len(commands), batch)],
                                timeout=timeout)

    def call_chunks(self, chunks: list[list[dict]], timeout: float = 30.0) -> list[dict]:
        """One control message per chunk, each sent when the previous one is answered: the plugin answers a
        message only when all its commands are done, so the wait grows with the chunk."""
        results: list[dict] = []
        with self._serial:  # the plugin answers in order; one request in flight keeps errors attributable
            for chunk in chunks:
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

    def known_clients(self) -> int:
        """How many clients the plugin holds (each later command rewrites them all)."""
        resp = self.call({"command": "listClients", "verbose": False, "count": 1, "offset": 0})[0]
        return int((resp.get("data") or {}).get("totalCount") or 0)

    def authorise_device(self, tenant_id: str, device_id: str) -> None:
        self.authorise_devices(tenant_id, [device_id])

    def _known_set(self, verb: str, tenant_id: str, device_ids: list[str]) -> int:
        """``register``/``unregister`` devices in the access plugin's known set (adr/0171); returns how many
        live sessions the broker closed."""
        lines = [f"{verb} device {device_username(tenant_id, d)}" for d in device_ids]
        closed = 0
        for i in range(0, len(lines), REGISTER_PER_MESSAGE):
            chunk = lines[i:i + REGISTER_PER_MESSAGE]
            for line, answer in zip(chunk, self.call_access(chunk), strict=True):
                status, _, rest = answer.partition(" ")
                if status != "ok":
                    raise BrokerAuthError(f"{line}: {rest or answer}")
                closed += int(rest or 0)
        return closed

    def authorise_devices(self, tenant_id: str, device_ids: list[str]) -> None:
        """Makes each device known to the broker (idempotently): in the access plugin's known set when the broker
        has it (adr/0171), else as a dynsec role and client, in as few control messages as the broker can take
        without stalling its sessions (``commands_per_message``)."""
        if self.access_available:
            self._known_set("register", tenant_id, device_ids)
            return
        known = self.known_clients() if len(device_ids) > 1 else 0
        chunks: list[list[dict]] = []
        for device_id in device_ids:
            if not chunks or len(chunks[-1]) + 2 > commands_per_message(known):
                chunks.append([])
            role, client = device_entries(tenant_id, device_id)
            chunks[-1] += [{"command": "createRole", **role}, {"command": "createClient", **client}]
            known += 1
        for resp in self.call_chunks(chunks):
            err = resp.get("error")
            if err and "already" not in err.lower():
                raise BrokerAuthError(f"{resp['command']}: {err}")

    def revoke_device(self, tenant_id: str, device_id: str) -> None:
        """Disables the client, which drops its live session, and takes its role away, so the device may use
        no topic. Refusing the device at CONNECT is the access plugin's job (``access.py``, adr/0100):
        Mosquitto 2.0 never consults dynamic security's ``disabled`` flag for certificate identities."""
        user = device_username(tenant_id, device_id)
        if self.access_available:  # out of the known set, its sessions closed (adr/0171)
            self._known_set("unregister", tenant_id, [device_id])
        # and out of dynsec, for a device provisioned there (one it does not know answers "not found")
        for resp in self.call({"command": "disableClient", "username": user},
                              {"command": "removeClientRole", "username": user, "rolename": device_role(tenant_id, device_id)}):
            if resp.get("error") and "not found" not in resp["error"].lower():
                raise BrokerAuthError(f"{resp['command']}: {resp['error']}")

    def enable_device(self, tenant_id: str, device_id: str) -> None:
        """Resume after a suspension: known again (adr/0171), or with dynsec alone its role back, its client
        enabled. A dynsec-provisioned device resumed this way is known to the plugin from then on."""
        if self.access_available:
            self._known_set("register", tenant_id, [device_id])
            return
        user = device_username(tenant_id, device_id)
        role, client = device_entries(tenant_id, device_id)
        for resp in self.call({"command": "createRole", **role}, {"command": "createClient", **client},
                              {"command": "addClientRole", "username": user, "rolename": role["rolename"]},
                              {"command": "enableClient", "username": user}):
            err = resp.get("error")
            if err and "already" not in err.lower():
                raise BrokerAuthError(f"{resp['command']}: {err}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
