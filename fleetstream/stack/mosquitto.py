"""Mosquitto 2 for the pilot/local stack: one mTLS listener (platform CA), the platform's access plugin (client
id bound to the certificate, revocation and suspension refused at CONNECT, adr/0100) and the dynamic-security
plugin for the platform's own identities; devices are registered at run time in the access plugin's known set
(adr/0003, adr/0171). EMQX is the production broker."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

from runtime.pki import PlatformPKI, tls_context
from runtime.settings import Settings
from schemas.limits import MAX_PAYLOAD_BYTES

from .process import Child, StartupError

PLUGIN_PATHS = ["/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/mosquitto_dynamic_security.so"]

ACCESS_PLUGIN_SOURCE = Path(__file__).with_name("mosquitto_access.c")
ADMIN_IDENTITY = "fleetstream-admin"
# The largest MQTT packet the broker reads: the connectors' payload limit plus the rest of a PUBLISH (fixed
# header ≤ 5 bytes, topic ≤ ~130 bytes in the fs/<tenant>/<device>/<channel> namespace, packet id, MQTT 5
# properties). Anything larger is refused before its body is read: MQTT 5 clients get DISCONNECT 0x95
# (Packet too large), 3.1.1 clients a closed connection; a payload between the two limits reaches the
# connector and is dead-lettered "oversize" there, so every publish gets a verdict.
PACKET_OVERHEAD_BYTES = 8 * 1024
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + PACKET_OVERHEAD_BYTES

MAX_QUEUED_BYTES = 2 * 1024**3
MAX_QUEUED_MESSAGES = 100_000_000  # the byte cap binds first for any message over ~21 bytes

SERVICE_ROLES = {
    # The control plane's broker admin: only the dynamic-security control topic.
    "platform-admin": [
        ("publishClientSend", "$CONTROL/dynamic-security/#"),
        ("publishClientReceive", "$CONTROL/dynamic-security/#"),
        ("subscribePattern", "$CONTROL/dynamic-security/#"),
    ],
    # Connectors read every device's uplink and write downlinks (commands, shadow deltas).
    "platform-connector": [
        ("subscribePattern", "$share/#"),
        ("subscribePattern", "fs/#"),
        ("publishClientReceive", "fs/#"),
        ("publishClientSend", "fs/#"),
        # the Sparkplug host application (adr/0155): every group, and its own STATE
        ("subscribePattern", "spBv1.0/#"),
        ("publishClientReceive", "spBv1.0/#"),
        ("publishClientSend", "spBv1.0/#"),
    ],
}


def _dynsec_initial() -> dict:
    roles = [{"rolename": name, "acls": [{"acltype": t, "topic": topic, "priority": 0, "allow": True}
                                         for t, topic in acls]}
             for name, acls in SERVICE_ROLES.items()]
    clients = [{"username": "fleetstream-admin", "roles": [{"rolename": "platform-admin"}]},
               {"username": "fleetstream-connector", "roles": [{"rolename": "platform-connector"}]}]
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
        "clients": clients, "groups": [], "roles": roles,
    }


def _refresh_service_roles(path: Path) -> None:
    """The platform's own roles as this version defines them (a data dir written by an older version keeps
    its devices, but e.g. gains the connector's Sparkplug ACLs, adr/0155). The broker is stopped here."""
    doc = json.loads(path.read_text())
    fresh = {r["rolename"]: r for r in _dynsec_initial()["roles"]}
    roles = doc.setdefault("roles", [])
    if all(fresh.get(r["rolename"], r) == r for r in roles):
        return
    doc["roles"] = [fresh.get(r["rolename"], r) for r in roles]
    tmp = path.with_suffix(".roles")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def dynsec_file(s: Settings) -> Path:
    return s.root / "mosquitto" / "dynamic-security.json"


def seed_dynsec(s: Settings, roles: list[dict], clients: list[dict]) -> int:
    """Adds roles and clients straight to the plugin's file; returns how many clients were new.

    Only while the broker is stopped: the plugin reads the file once at start (a SIGHUP does not reload
    it, measured on 2.0.11) and overwrites it on its next command. One write for any number of devices,
    where the control topic rewrites the whole file per command (adr/0035)."""
    path = dynsec_file(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else _dynsec_initial()
    have_roles = {r["rolename"] for r in doc.get("roles", [])}
    have_clients = {c["username"] for c in doc.get("clients", [])}
    doc.setdefault("roles", []).extend(r for r in roles if r["rolename"] not in have_roles)
    new = [c for c in clients if c["username"] not in have_clients]
    doc.setdefault("clients", []).extend(new)
    tmp = path.with_suffix(".seed")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)
    return len(new)


def access_state_file(s: Settings) -> Path:
    """The access plugin's deny list (tenants, devices, certificate serials), kept by the plugin."""
    return s.root / "mosquitto" / "access-denied.txt"


def access_known_file(s: Settings) -> Path:
    """The access plugin's journal of registered devices (adr/0171), kept by the plugin."""
    return s.root / "mosquitto" / "access-known.txt"


def build_access_plugin() -> Path:
    """Compiles the access plugin once per source version into the cache; returns the shared object.

    Needs a C compiler and the mosquitto-dev and libssl-dev headers (scripts/setup.sh installs them)."""
    src = ACCESS_PLUGIN_SOURCE.read_bytes()
    cache = Path(os.environ.get("FLEETSTREAM_CACHE", Path.home() / ".cache" / "fleetstream")) / "mosquitto"
    out = cache / f"fleetstream_access-{hashlib.sha256(src).hexdigest()[:12]}.so"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise StartupError("no C compiler for the broker's access plugin: run scripts/setup.sh")
    r = subprocess.run([cc, "-O2", "-Wall", "-fPIC", "-shared", "-o", str(tmp), str(ACCESS_PLUGIN_SOURCE), "-lcrypto"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise StartupError(f"could not build the broker's access plugin (run scripts/setup.sh): {r.stderr[-2000:]}")
    tmp.replace(out)
    return out


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard one; returns it. Mosquitto holds one descriptor per session
    and never raises its own limit: a shell's default 1024 would cap the broker near 1,000 devices."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def mosquitto_child(s: Settings, pki: PlatformPKI) -> Child:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise StartupError("mosquitto not installed: run scripts/setup.sh")
    plugin = next((p for p in PLUGIN_PATHS if Path(p).exists()), None)
    if plugin is None:
        raise StartupError("mosquitto dynamic-security plugin not found")
    home = s.root / "mosquitto"
    home.mkdir(parents=True, exist_ok=True)
    dynsec = dynsec_file(s)
    if not dynsec.exists():
        dynsec.write_text(json.dumps(_dynsec_initial(), indent=2))
    else:
        _refresh_service_roles(dynsec)
    access = build_access_plugin()
    conf = home / "mosquitto.conf"
    conf.write_text(f"""# generated by fleetstream; edit fleetstream/stack/mosquitto.py instead
user {getpass.getuser()}
per_listener_settings false
persistence true
persistence_location {home}/
# Saved every 10 s, not only at a clean exit (the default is 30 min): a broker killed hard comes back with the
# connector's session and shared subscription, so what devices publish before the connector reconnects is
# queued for it instead of dropped for want of a subscriber (adr/0111).
autosave_interval 10
log_dest file {s.logs_dir / 'mosquitto-broker.log'}
log_type error
log_type warning
log_type notice
connection_messages true
# the connector's window (its Receive Maximum, 10,000) is what limits it; devices announce their own
max_inflight_messages 10000
# A QoS1 message the broker acknowledged to a device waits in the connector's session until the connector
# takes it; past these limits Mosquitto drops it (logged "Outgoing messages are being dropped"), a loss the
# device cannot see. Bytes capped at 2 GiB: ~10 million readings, ~17 minutes of a 10k msg/s fleet with the
# connector away, before anything is dropped (seen at 100,000 messages in an overload run). The count is set
# far above what 2 GiB holds, NOT to 0 ("unlimited"): Debian's 2.0.11 carries upstream's CVE-2023-28366 fix,
# which closes the connection after any refused publish when a client's outgoing packets >= this count, so
# with 0 every refused publish (any QoS, 3.1.1 or 5) cut the device off (issue 19, adr/0100).
max_queued_messages {MAX_QUEUED_MESSAGES}
max_queued_bytes {MAX_QUEUED_BYTES}
max_packet_size {MAX_PACKET_BYTES}
# The access plugin comes first: it derives every session's identity from its certificate (CN as username),
# refuses a device whose client id is not "<tenant>.<device>", refuses denied certificates, devices and
# tenants, and keeps devices inside fs/<tenant>/<device>/ (adr/0100); there a device it knows as registered is
# allowed (adr/0171). Dynamic security decides the platform's topics and those of devices it alone knows. No acl_file: an identity neither plugin allows is denied (an acl_file's default check
# grants every subscription, which is how "#" used to be answered "granted").
plugin {access}
plugin_opt_platform_issuer {pki.root_cn()}
plugin_opt_admin {ADMIN_IDENTITY}
plugin_opt_state_file {access_state_file(s)}
plugin_opt_known_file {access_known_file(s)}
plugin {plugin}
plugin_opt_config_file {dynsec}

listener {s.mqtt_tls_port} {s.host}
protocol mqtt
cafile {pki.ca_cert}
certfile {pki.dir / 'broker.crt'}
keyfile {pki.dir / 'broker.key'}
require_certificate true
# no use_identity_as_username: with it Mosquitto 2.0.11 runs no authentication plugin, so a client id could
# not be checked against the certificate; the access plugin sets the CN as the username instead
# no cap on sessions (issue 7: 10,000 on one node); the open-files limit is the real one (raise_fd_limit)
max_connections -1
""")
    raise_fd_limit()  # inherited by the broker process started from here
    return Child("mosquitto", [exe, "-c", str(conf)], s.logs_dir / "mosquitto.log")


def _connect_once(s: Settings, pki: PlatformPKI, client_id: str, identity: str, timeout: float, **connect) -> bool:
    """One mTLS CONNECT as ``identity`` (a platform service certificate); True once CONNACK accepts it."""
    import threading

    import paho.mqtt.client as mqtt

    acked = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set_context(tls_context(pki, *pki.service_files(identity)))
    c.on_connect = lambda _c, _u, _f, rc, _p: acked.set() if not rc.is_failure else None
    try:
        c.connect(s.mqtt_broker_host, s.mqtt_tls_port, keepalive=5, **connect)
        c.loop_start()
        ok = acked.wait(timeout)
        c.disconnect()
        c.loop_stop()
        return ok
    except OSError:
        return False


def mqtt_ready(s: Settings, pki: PlatformPKI, timeout: float = 3.0) -> bool:
    """A real mTLS handshake, CONNECT and CONNACK as the admin service, not just an open port."""
    return _connect_once(s, pki, "fleetstream-health", "fleetstream-admin", timeout)


def end_session(s: Settings, pki: PlatformPKI, client_id: str, timeout: float = 10.0) -> bool:
    """Ends ``client_id``'s persistent session (and with it its subscriptions and queued messages): a CONNECT
    with clean start and no session expiry, as the connectors' service identity, then DISCONNECT."""
    return _connect_once(s, pki, client_id, "fleetstream-connector", timeout, clean_start=True)
