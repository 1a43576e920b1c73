"""A Mosquitto of its own (the stack's config, access plugin and dynamic security, no Kafka or Postgres) for the
broker's rules; tests that need readings to be stored use the shared ``stack`` fixture instead."""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties

from fleetstream.stack.mosquitto import mosquitto_child, mqtt_ready
from fleetstream.stack.process import port_open
from gateway.broker.access import BrokerAccess
from gateway.broker.dynsec import DynSecAdmin
from gateway.identity.certificates import TenantCAs
from gateway.identity.secrets import keystore_from_settings
from runtime.pki import PlatformPKI, tls_context, write_private
from runtime.settings import Settings
from tests.conftest import PORT_OFFSET


@dataclass
class Identity:
    """Certificate files of a device (CN ``<tenant>.<device>``) or a platform service."""
    cn: str
    cert: Path
    key: Path
    serial: str = ""

    def tls(self, ca: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


class Broker:
    def __init__(self, s: Settings):
        self.s = s
        self.pki = PlatformPKI(s.pki_dir)
        self.pki.ensure([s.host, "localhost"])
        self.cas = TenantCAs(self.pki, keystore_from_settings(s))
        self.child = mosquitto_child(s, self.pki)
        self.control: DynSecAdmin | None = None

    def start(self) -> None:
        self.child.start()
        self.child.wait_until(lambda: port_open(self.s.host, self.s.mqtt_tls_port) and mqtt_ready(self.s, self.pki),
                              30, "mosquitto mTLS CONNECT")
        self.control = DynSecAdmin(self.s.host, self.s.mqtt_tls_port,
                                   tls_context(self.pki, *self.pki.service_files("fleetstream-admin")))
        self.access = BrokerAccess(self.control)

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
        self.child.stop()

    def device(self, tenant_id: str | None = None, device_id: str | None = None, *, authorise: bool = True) -> Identity:
        """A device certificate from its tenant's CA, authorised on the broker like the control plane does."""
        tenant_id = tenant_id or str(uuid.uuid4())
        device_id = device_id or f"dev-{uuid.uuid4().hex[:8]}"
        issued = self.cas.issue_for_device(tenant_id, device_id)
        d = self.s.root / "devices" / tenant_id / f"{device_id}-{issued.serial[:8]}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "device.crt").write_text(issued.certificate_pem)
        write_private(d / "device.key", issued.private_key_pem.encode())
        if authorise:
            assert self.control is not None
            self.control.authorise_device(tenant_id, device_id)
        return Identity(f"{tenant_id}.{device_id}", d / "device.crt", d / "device.key", issued.serial)

    def platform(self, name: str) -> Identity:
        crt, key = self.pki.service_files(name)
        return Identity(name, Path(crt), Path(key))


class Session:
    """One paho MQTT client with what the broker told it: CONNACK, SUBACK, PUBACK codes and the DISCONNECT."""

    def __init__(self, broker: Broker, who: Identity, client_id: str, *, protocol=mqtt.MQTTv5,
                 clean_start: bool = True):
        self.broker, self.protocol = broker, protocol
        self.connack: int | None = None
        self.disconnects: list[int] = []
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                        reconnect_on_failure=False)
        c.tls_set_context(who.tls(broker.pki.ca_cert))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = lambda _c, _u, mid, codes, _p: self._note(self.subacks, mid, [int(x.value) for x in codes])
        c.on_publish = lambda _c, _u, mid, rc, _p: self._note(self.pubacks, mid, int(rc.value))
        c.on_message = lambda _c, _u, m: self._note_msg(m)
        self.client = c
        self._clean_start = clean_start

    def _note(self, box: dict, key, value) -> None:
        with self._cond:
            box[key] = value
            self._cond.notify_all()

    def _note_msg(self, m) -> None:
        with self._cond:
            self.messages.append(m)
            self._cond.notify_all()

    def _on_connect(self, _c, _u, _flags, rc, _p) -> None:
        with self._cond:
            self.connack = int(rc.value)
            self._cond.notify_all()

    def _on_disconnect(self, _c, _u, _flags, rc, _p) -> None:
        with self._cond:
            self.disconnects.append(int(rc.value))
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 20.0, what: str = "condition"):
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: connack={self.connack} "
                                     f"disconnects={self.disconnects} subacks={self.subacks} pubacks={self.pubacks}")
            return predicate()

    def connect(self, *, keepalive: int = 30, properties: Properties | None = None) -> int:
        """Connects and returns the CONNACK reason (MQTT 5) or return code (3.1.1)."""
        kw = {"clean_start": self._clean_start} if self.protocol == mqtt.MQTTv5 else {}
        if properties is not None:
            kw["properties"] = properties
        self.client.connect(self.broker.s.host, self.broker.s.mqtt_tls_port, keepalive=keepalive, **kw)
        self.client.loop_start()
        # a refused CONNECT answers with a CONNACK before closing; a closed TLS handshake answers nothing
        self.wait(lambda: self.connack is not None or self.disconnects, what="CONNACK")
        return self.connack if self.connack is not None else -1

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        _rc, mid = self.client.subscribe(topic, qos=qos)
        return self.wait(lambda: self.subacks.get(mid), what=f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> int:
        info = self.client.publish(topic, payload, qos=qos)
        if not qos:
            return 0
        self.wait(lambda: info.mid in self.pubacks, what=f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="session")
def broker():
    root = Path(tempfile.mkdtemp(prefix="fleetstream-broker-test-"))
    s = Settings(data_dir=root, mqtt_tls_port=28933 + PORT_OFFSET)
    b = Broker(s)
    try:
        b.start()
        yield b
    finally:
        b.stop()
        shutil.rmtree(root, ignore_errors=True)
        s.master_key_path.unlink(missing_ok=True)


@pytest.fixture
def sessions(broker):
    """Opens ``Session``s and closes whatever a test left open."""
    opened: list[Session] = []

    def make(who: Identity, client_id: str | None = None, **kw) -> Session:
        s = Session(broker, who, client_id if client_id is not None else who.cn, **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
