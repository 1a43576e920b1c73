"""The push side of the connector contract suite: protocols whose devices send (MQTT, CoAP, HTTP), so the
peer is a device client, not a server the connector polls. Each peer runs the real connector (MQTT: its own
``fleetstream connector run mqtt`` process in its own share group; CoAP and HTTP: the connector objects in
this process, as the Modbus and OPC-UA peers do) and the devices of the suite:

- ``dev-1`` (registered, may send; answers a ``write`` command with what it then holds);
- ``ghost`` (never registered) and ``held`` (registered, suspended).

Where the verdict lands differs by protocol, and the peer says where (``REFUSALS``): a device the platform
cannot identify has no tenant to file a dead letter under, so it is told at the door (TLS handshake, 4.01,
401); a known but refused device is told and, where the connector sees the message, dead-lettered.
``CANNOT`` holds, per contract clause, the fact that makes a clause impossible for the protocol."""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import json
import ssl
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import paho.mqtt.client as mqtt

from tests.conftest import PORT_OFFSET
from tests.connectors.support import LoopThread, es256_keypair, new_tenant_id, register_device
from tests.utils.factories import wait_for

DEVICES = ("dev-1", "ghost", "held")


@dataclass
class Answer:
    """What the device was told: ``ok``, or the refusal's reason code."""

    ok: bool
    code: str | None = None


class PushPeer(abc.ABC):
    protocol: ClassVar[str]
    # device → (the reason code the device is told, whether a dead letter with that code is filed too)
    REFUSALS: ClassVar[dict[str, tuple[str, bool]]]
    CANNOT: ClassVar[dict[str, str]] = {}

    def __init__(self, settings, factory, workdir: Path):
        self.settings, self.factory, self.workdir = settings, factory, workdir
        self.bootstrap = settings.bootstrap_servers
        self.holds: dict[str, float] = {}  # what dev-1 holds after the commands it applied
        self.commands: list[dict] = []

    @abc.abstractmethod
    def start(self) -> str:
        """Registers the devices, starts the connector and dev-1's command handling; returns the tenant id."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def send(self, device: str, body: bytes) -> Answer:
        """``body`` (canonical JSON) as ``device``, the protocol's way; returns when the device has its answer."""

    @abc.abstractmethod
    def stop_connector(self) -> None: ...

    @abc.abstractmethod
    def start_connector(self) -> None: ...

    def go_offline(self) -> None:
        raise NotImplementedError

    def _apply(self, cmd: dict) -> dict:
        """dev-1 applies a command and returns its answer (the ack document the protocol carries)."""
        self.commands.append(cmd)
        params = cmd.get("params") or {}
        if cmd.get("name") != "write" or not isinstance(params.get("values"), dict):
            return {"command_id": cmd["command_id"], "status": "failed", "reason": "dev-1 knows only write"}
        self.holds.update(params["values"])
        return {"command_id": cmd["command_id"], "status": "succeeded",
                "result": {"holds": {k: self.holds[k] for k in params["values"]}}}


# -- MQTT ----------------------------------------------------------------------------------------------------
def _self_signed(workdir: Path) -> tuple[Path, Path]:
    """A certificate no tenant CA issued: what a device the platform never registered could hold at best."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ghost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    crt, pem = workdir / "ghost.crt", workdir / "ghost.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


class MqttPeer(PushPeer):
    protocol = "mqtt"
    REFUSALS = {"ghost": ("tls_refused", False), "held": ("not_authorized", False)}

    def start(self) -> str:
        from schemas.namespace import device_topics

        f = self.factory
        t = f.tenant("contract-mqtt")
        self.devs = {"dev-1": f.device(t, "dev-1"), "held": f.device(t, "held")}
        f.admin.change_status(t.tenant_id, "held", "suspend", actor="test")
        self.tenant, self.topics = t.tenant_id, device_topics(t.tenant_id, "dev-1")
        self.group = f"contract-{uuid.uuid4().hex[:8]}"
        self.client_id = f"{self.group}-c"
        self.proc: subprocess.Popen | None = None
        self.start_connector()
        self.dev = self._connect("dev-1")
        self.dev.on_message = self._on_command
        subscribed = threading.Event()
        self.dev.on_subscribe = lambda *_: subscribed.set()
        self.dev.subscribe(self.topics["commands"], qos=1)
        assert subscribed.wait(10)
        return self.tenant

    def _connect(self, device: str, *, will: bool = True) -> mqtt.Client:
        c = self.factory.mqtt_client(self.devs[device], connect=False)
        if will:  # the device's Last Will: offline on its status topic (docs/devices/mqtt.md)
            c.will_set(self.topics["status"], "offline", qos=1)
        connected = threading.Event()
        c.on_connect = lambda *_: connected.set()
        c.connect(self.settings.mqtt_broker_host, self.settings.mqtt_tls_port, keepalive=5)
        c.loop_start()
        assert connected.wait(10)
        return c

    def _on_command(self, client, _u, msg) -> None:
        client.publish(self.topics["command_ack"], json.dumps(self._apply(json.loads(msg.payload))), qos=1)

    def start_connector(self) -> None:
        from tests.connectors.mqtt.support import start_connector, subscriptions

        before = subscriptions(self.workdir, self.client_id)
        self.proc = start_connector(self.settings, self.workdir, self.client_id, self.group)
        wait_for(lambda: subscriptions(self.workdir, self.client_id) > before, timeout=90,
                 what="the MQTT connector subscribed")

    def stop_connector(self) -> None:
        from tests.connectors.mqtt.support import stop_all

        stop_all([self.proc])

    def close(self) -> None:
        for c in (getattr(self, "dev", None),):
            if c is not None:
                c.disconnect()
                c.loop_stop()
        self.stop_connector()

    def send(self, device: str, body: bytes) -> Answer:
        if device == "ghost":
            return self._ghost()
        if device == "held":
            return self._held()
        info = self.dev.publish(self.topics["telemetry"], body, qos=1)
        info.wait_for_publish(30)
        return Answer(info.is_published())

    def _ghost(self) -> Answer:
        crt, key = _self_signed(self.workdir)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.devs["dev-1"].cert_dir / "ca.crt"))
        ctx.load_cert_chain(str(crt), str(key))
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ghost", protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        try:
            c.connect(self.settings.mqtt_broker_host, self.settings.mqtt_tls_port, keepalive=5)
            c.loop_read()  # the broker's verdict on the handshake: a refusal, never a CONNACK
            return Answer(False, "tls_refused") if not c.is_connected() else Answer(True)
        except (ssl.SSLError, OSError):
            return Answer(False, "tls_refused")
        finally:
            c.disconnect()

    def _held(self) -> Answer:
        c = self.factory.mqtt_client(self.devs["held"], connect=False)
        reasons: list = []
        done = threading.Event()

        def on_connect(_c, _u, _f, rc, _p):
            reasons.append(rc)
            done.set()
        c.on_connect = on_connect
        c.on_disconnect = lambda *_: done.set()
        try:
            c.connect(self.settings.mqtt_broker_host, self.settings.mqtt_tls_port, keepalive=5)
            c.loop_start()
            done.wait(15)
        finally:
            c.disconnect()
            c.loop_stop()
        rc = reasons[0] if reasons else None
        if rc is not None and not rc.is_failure:
            return Answer(True)
        return Answer(False, "not_authorized" if rc is None or rc.value == 0x87 else str(rc))

    def go_offline(self) -> None:
        """The device's link dies without DISCONNECT: the broker publishes its Will."""
        self.dev.loop_stop()
        self.dev.socket().close()

    def come_back(self) -> None:
        self.dev = self._connect("dev-1")
        self.dev.on_message = self._on_command
        self.dev.subscribe(self.topics["commands"], qos=1)
        self.dev.publish(self.topics["status"], "online", qos=1).wait_for_publish(10)

    def announce_online(self) -> None:
        self.dev.publish(self.topics["status"], "online", qos=1).wait_for_publish(10)


# -- CoAP ----------------------------------------------------------------------------------------------------
class _InProcess(PushPeer):
    """Registry, admission, uplink and command router in this process, as the server peers' harness has."""

    def _registry(self, keys: dict[str, str]) -> str:
        from connectors.registry import DeviceRegistry

        tenant = new_tenant_id()
        for device, status in (("dev-1", "active"), ("held", "suspended")):
            register_device(self.bootstrap, tenant, device, status=status,
                            jwt_public_keys=[keys[device]] if device in keys else None)
        self.registry = DeviceRegistry(self.bootstrap, f"test-contract-{self.protocol}").start()
        # both: the two entries are keyed to different partitions, which the registry may read at different paces
        wait_for(lambda: self.registry.get(tenant, "dev-1") and self.registry.get(tenant, "held"), timeout=60,
                 what="registry entries")
        return tenant

    def _admission(self):
        from connectors.base import Admission
        from connectors.ratelimit import TokenBuckets

        return Admission(self.registry, TokenBuckets(1000, 1000))


class CoapPeer(_InProcess):
    protocol = "coap"
    port = 25685 + PORT_OFFSET  # not 25783: the stack's CoAP connector (tests/conftest.py TEST_PORTS)
    REFUSALS = {"ghost": ("unauthenticated", False), "held": ("device_disabled", False)}
    CANNOT = {"status": "CoAP is request/response over UDP without a session: the CoAP connector reports no "
              "ONLINE/OFFLINE events (a device's last_seen follows its readings), so there is no status to follow"}

    def start(self) -> str:
        import aiocoap

        from connectors.uplink import UplinkPublisher

        self.loop = LoopThread("contract-coap")
        self.keys = {d: es256_keypair() for d in DEVICES}
        self.tenant = self._registry({d: pub for d, (_priv, pub) in self.keys.items()})
        self.uplink = UplinkPublisher(self.bootstrap, "coap")
        self.client = self.loop.run(aiocoap.Context.create_client_context())
        self.conn = self.router = None
        self.start_connector()
        return self.tenant

    def _message(self, device: str, path: str, payload: bytes = b"", **kw):
        from aiocoap import Code, Message
        from aiocoap.optiontypes import OpaqueOption

        from connectors.coap.adaptor import AUTH_OPTION, JSON
        from runtime.device_jwt import sign_device_jwt

        m = Message(code=kw.pop("code", Code.POST), uri=f"coap://127.0.0.1:{self.port}/{path}", payload=payload,
                    content_format=kw.pop("fmt", JSON), **kw)
        token = sign_device_jwt(self.keys[device][0], self.tenant, device)
        m.opt.add_option(OpaqueOption(AUTH_OPTION, token.encode()))
        return m

    def start_connector(self) -> None:
        from connectors.coap.config import CoapConfig
        from connectors.coap.connector import CoapConnector
        from connectors.commands import CommandRouter

        self.conn = CoapConnector(self.uplink, CoapConfig(host="127.0.0.1", port=self.port), self._admission())
        self.loop.run(self.conn.start())
        self.router = CommandRouter(self.bootstrap, self.conn, self.loop.loop,
                                    f"test-contract-coap-{self.tenant}-{uuid.uuid4().hex[:6]}").start()
        self._observe()

    def _observe(self) -> None:
        """dev-1 observes its command resource and answers each new command on ``commands/ack``."""
        from aiocoap import Code

        seen: set[str] = set()

        async def go():
            req = self.client.request(self._message("dev-1", "commands", code=Code.GET, fmt=None, observe=0))
            await req.response

            async def pump():
                try:
                    async for note in req.observation:
                        for cmd in json.loads(note.payload)["commands"]:
                            if cmd["command_id"] not in seen:
                                seen.add(cmd["command_id"])
                                answer = self._apply(cmd)
                                ack = json.dumps({**answer, "status": answer["status"].upper()}).encode()
                                await self.client.request(self._message("dev-1", "commands/ack", ack)).response
                except Exception:  # the observation ends with the connector; start_connector observes again
                    pass
            self._pump = asyncio.ensure_future(pump())
        self.loop.run(go())

    def stop_connector(self) -> None:
        self.router.stop()
        self.loop.run(self.conn.stop())

    def close(self) -> None:
        self.stop_connector()
        self.loop.run(self.client.shutdown())
        self.registry.stop()
        self.uplink.close()
        self.loop.close()

    def send(self, device: str, body: bytes) -> Answer:
        from aiocoap import Code

        async def go():
            return await self.client.request(self._message(device, "telemetry", body)).response
        r = self.loop.run(go(), timeout=120)
        if r.code == Code.CHANGED:
            return Answer(True)
        return Answer(False, r.payload.decode(errors="replace").split(":", 1)[0].strip())


# -- HTTP ----------------------------------------------------------------------------------------------------
class HttpPeer(_InProcess):
    """The HTTP ingest connector the gateway serves ``POST /v1/ingest`` with (adr/0044). The device's JWT or
    certificate is checked by the gateway in front of it (tests/connectors/http/test_ingest.py); here the
    identity it resolved is handed in, as the route does."""

    protocol = "http"
    REFUSALS = {"ghost": ("unknown_device", True), "held": ("device_disabled", True)}
    CANNOT = {
        "status": "HTTP ingest is request/response without a session: the connector reports no ONLINE/OFFLINE "
                  "events (a device's last_seen follows its readings), so there is no status to follow",
        "commands": "the platform has no downlink to HTTP devices (docs/devices/http.md: ingest only, no command "
                    "resource or long poll); a device that takes commands uses MQTT or CoAP",
    }

    def start(self) -> str:
        self.loop = LoopThread("contract-http")
        self.tenant = self._registry({})
        self.conn = None
        self.start_connector()
        return self.tenant

    def start_connector(self) -> None:
        from connectors.http.connector import HttpIngestConnector
        from connectors.uplink import UplinkPublisher

        # the connector's stop closes its uplink, so every start has its own, as a new gateway process would
        self.conn = HttpIngestConnector(UplinkPublisher(self.bootstrap, "http"), self._admission())
        self.loop.run(self.conn.start())

    def stop_connector(self) -> None:
        self.loop.run(self.conn.stop())

    def close(self) -> None:
        self.stop_connector()
        self.registry.stop()
        self.loop.close()

    def send(self, device: str, body: bytes) -> Answer:
        from connectors.errors import ConnectorError

        try:
            self.loop.run(self.conn.ingest(self.tenant, device, body), timeout=120)
            return Answer(True)
        except ConnectorError as exc:
            return Answer(False, exc.code)


PUSH_PEERS: dict[str, type[PushPeer]] = {p.protocol: p for p in (MqttPeer, CoapPeer, HttpPeer)}
