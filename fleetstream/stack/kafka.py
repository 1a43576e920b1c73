"""Apache Kafka 4.4 in KRaft mode, run from the Maven Central jars that scripts/setup.sh caches: one PLAINTEXT
node (the default), or a local SASL_SSL cluster of ``kafka_brokers`` nodes (adr/0132, adr/0190)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from runtime.kafka import KafkaLike, clients
from runtime.pki import PlatformPKI, write_private
from runtime.settings import KAFKA_NODE_PORT_STRIDE, Settings
from schemas import topics

from .process import Child, StartupError

KAFKA_VERSION = "4.4.0"


def jar_dir() -> Path:
    cache = Path(os.environ.get("FLEETSTREAM_CACHE", Path.home() / ".cache" / "fleetstream"))
    return cache / f"kafka-{KAFKA_VERSION}" / "lib"


def class_archive() -> Path:
    """The brokers' class-data archive, recorded once per jar set by ``record_class_archive`` (setup.sh)."""
    return jar_dir().parent / "broker.jsa"


def classpath() -> str:
    lib = jar_dir()
    if not (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        raise StartupError(f"Kafka jars missing in {lib}: run scripts/setup.sh (make up / make test do)")
    return f"{lib}/*"


def is_node(name: str) -> bool:
    """Whether a stack child of that name is a Kafka node (``kafka``, or ``kafka-N`` of a local cluster)."""
    return name == "kafka" or (name.startswith("kafka-") and name.removeprefix("kafka-").isdigit())


def _properties(s: Settings, data: Path) -> str:
    h = s.host
    return f"""process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://{h}:{s.kafka_port},CONTROLLER://{h}:{s.kafka_controller_port}
advertised.listeners=PLAINTEXT://{h}:{s.kafka_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.voters=1@{h}:{s.kafka_controller_port}
log.dirs={data}
num.partitions={s.kafka_partitions}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=60000
message.max.bytes=2097152
"""


# -- the local cluster (adr/0132, adr/0190): N combined broker+controller nodes, SASL_SSL SCRAM-SHA-512 between
# everyone (the brokers' certificate from the platform CA), RF 3 / min ISR 2. Node i (0-based) listens on
# kafka_port + 4i (SASL_SSL, or SASL_PLAINTEXT when asked for), + 4i + 1 (controller) and, for tests only,
# + 4i + 2 (OAUTHBEARER with Kafka's unsecured-JWT validator) and + 4i + 3 (SSL with client certificates).
CLUSTER_USER = "fleetstream"
CLUSTER_PROTOCOLS = ("SASL_SSL", "SASL_PLAINTEXT")


def node_ports(s: Settings, i: int) -> tuple[int, int, int, int]:
    """(client listener, controller, unsecured-JWT OAUTHBEARER test listener, mTLS test listener) of node i."""
    base = s.kafka_port + KAFKA_NODE_PORT_STRIDE * i
    return base, base + 1, base + 2, base + 3


def oauth_bootstrap(s: Settings) -> str:
    """The unsecured OAUTHBEARER listeners of the local cluster (``kafka_test_oauth_listener``)."""
    return ",".join(f"{s.host}:{node_ports(s, i)[2]}" for i in range(s.kafka_brokers))


def mtls_bootstrap(s: Settings) -> str:
    """The SSL listeners with required client certificates of the local cluster (``kafka_test_mtls_listener``)."""
    return ",".join(f"{s.host}:{node_ports(s, i)[3]}" for i in range(s.kafka_brokers))


def cluster_password(s: Settings) -> str:
    """The local cluster's SCRAM password: generated once into the data dir (0600), like Postgres's."""
    return _generated_secret(s.root / "kafka" / "scram.password")


def _generated_secret(path: Path) -> str:
    import secrets

    if not path.exists():
        write_private(path, secrets.token_urlsafe(24).encode())
    return path.read_text().strip()


def cluster_settings(s: Settings) -> None:
    """What a cluster-mode stack's processes use: SASL_SSL with its SCRAM user, trusting the platform root CA
    (the brokers' certificate is issued by it), and RF 3 / min ISR 2 (unless set)."""
    if s.kafka_brokers < 2 or s.kafka_bootstrap:
        return
    if s.kafka_sasl_username == CLUSTER_USER and not s.kafka_sasl_password:  # settings read back from stack.json
        s.kafka_sasl_password = cluster_password(s)
    if s.kafka_security_protocol.upper() == "PLAINTEXT":
        s.kafka_security_protocol = "SASL_SSL"
    if s.kafka_security_protocol.upper() in CLUSTER_PROTOCOLS and not s.kafka_sasl_username:
        s.kafka_sasl_mechanism = "SCRAM-SHA-512"
        s.kafka_sasl_username, s.kafka_sasl_password = CLUSTER_USER, cluster_password(s)
    if s.kafka_security_protocol.upper() == "SASL_SSL" and not s.kafka_ssl_ca_file:
        s.kafka_ssl_ca_file = PlatformPKI(s.pki_dir).ca_cert
    if s.kafka_replication_factor == 1:
        s.kafka_replication_factor = min(3, s.kafka_brokers)
        s.kafka_min_insync_replicas = max(1, s.kafka_replication_factor - 1)


def active_controller(s: Settings) -> int:
    """Node id of the cluster's active KRaft controller, from the quorum state the nodes write (the
    newest epoch any of them knows; the metadata API names a random broker as "controller" under KRaft)."""
    import json

    best = (-1, -1)
    for i in range(s.kafka_brokers):
        path = s.root / "kafka" / f"node-{i + 1}" / "data" / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("leaderId", -1) >= 0:
            best = max(best, (state.get("leaderEpoch", -1), state["leaderId"]))
    if best[1] < 0:
        raise RuntimeError("no node knows the active controller yet")
    return best[1]


def _cluster_properties(s: Settings, i: int, data: Path, tls: dict[str, str]) -> str:
    h = s.host
    client, ctrl, oauth, mtls = node_ports(s, i)
    voters = ",".join(f"{n + 1}@{h}:{node_ports(s, n)[1]}" for n in range(s.kafka_brokers))
    rf = s.kafka_replication_factor
    isr = s.kafka_min_insync_replicas
    protocol = s.kafka_security_protocol.upper()  # SASL_SSL or SASL_PLAINTEXT (kafka_children checks)
    name = protocol.lower()
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{s.kafka_sasl_username}" '
            f'password="{s.kafka_sasl_password}";')
    listeners = f"{protocol}://{h}:{client},CONTROLLER://{h}:{ctrl}"
    advertised = f"{protocol}://{h}:{client}"
    protocols = f"CONTROLLER:PLAINTEXT,{protocol}:{protocol}"
    extra = ""
    # ACLs (adr/0145): the platform's own user may do anything; so may ANONYMOUS, which is only ever the
    # principal of the CONTROLLER listener (PLAINTEXT on the loopback, nodes talking to the quorum). Every
    # client listener authenticates, and tenants' SCRAM users get only what their ACLs name.
    super_users = f"User:{s.kafka_sasl_username};User:ANONYMOUS"
    if s.kafka_test_oauth_listener:
        listeners += f",OAUTH://{h}:{oauth}"
        advertised += f",OAUTH://{h}:{oauth}"
        protocols += ",OAUTH:SASL_PLAINTEXT"
        # no server callback handler: Kafka validates OAUTHBEARER with its unsecured-JWT handler (tests only)
        extra += ("listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER\n"
                  "listener.name.oauth.oauthbearer.sasl.jaas.config="
                  "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\n")
    if s.kafka_test_mtls_listener:
        listeners += f",MTLS://{h}:{mtls}"
        advertised += f",MTLS://{h}:{mtls}"
        protocols += ",MTLS:SSL"
        # the certificate's CN is the principal ACLs name (Kafka's default is the whole DN)
        extra += ("listener.name.mtls.ssl.client.auth=required\n"
                  "listener.name.mtls.ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT\n")
    if tls:
        # one keystore (the brokers' certificate, PKCS12) and one truststore (the platform root CA, PEM) for
        # every TLS listener; inter-broker traffic verifies it too (host name checks included)
        extra += "".join(f"{k}={v}\n" for k, v in tls.items())
    return f"""process.roles=broker,controller
node.id={i + 1}
listeners={listeners}
advertised.listeners={advertised}
controller.listener.names=CONTROLLER
listener.security.protocol.map={protocols}
inter.broker.listener.name={protocol}
controller.quorum.voters={voters}
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.{name}.scram-sha-512.sasl.jaas.config={jaas}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users={super_users}
allow.everyone.if.no.acl.found=false
{extra}log.dirs={data}
num.partitions={s.kafka_partitions}
auto.create.topics.enable=false
default.replication.factor={rf}
min.insync.replicas={isr}
unclean.leader.election.enable=false
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=6
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=60000
message.max.bytes=2097152
"""


def cluster_tls(s: Settings) -> dict[str, str]:
    """The brokers' TLS settings when any listener uses TLS: a server certificate from the platform CA (its
    own, ``pki/kafka/broker.crt``, names the brokers' host and addresses) in a PKCS12 keystore with a generated
    password (0600), and the platform root CA as the truststore. Empty when nothing uses TLS."""
    if s.kafka_security_protocol.upper() != "SASL_SSL" and not s.kafka_test_mtls_listener:
        return {}
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    pki = PlatformPKI(s.pki_dir)
    certs = s.pki_dir / "kafka"
    if not (certs / "broker.crt").exists():
        pki.issue("fleetstream kafka broker", server=True, into=certs,
                  sans=sorted({"localhost", "127.0.0.1", s.host, s.public_host}))
    password = _generated_secret(s.root / "kafka" / "keystore.password")
    store = s.root / "kafka" / "keystore.p12"
    if not store.exists() or store.stat().st_mtime < (certs / "broker.crt").stat().st_mtime:
        key = serialization.load_pem_private_key((certs / "broker.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((certs / "broker.crt").read_bytes())
        ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        write_private(store, pkcs12.serialize_key_and_certificates(
            b"kafka", key, cert, [ca], serialization.BestAvailableEncryption(password.encode())))  # type: ignore[arg-type]
    return {"ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(store),
            "ssl.keystore.password": password, "ssl.key.password": password,
            "ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca_cert)}


def _log4j(s: Settings, name: str = "kafka-server") -> str:
    return f"""Configuration:
  status: warn
  Appenders:
    File:
      name: F
      fileName: "{s.logs_dir / (name + '.log')}"
      PatternLayout: {{pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {{level: INFO, AppenderRef: [{{ref: F}}]}}
    Logger:
      - {{name: kafka.log, level: WARN}}
      - {{name: org.apache.kafka.storage, level: WARN}}
"""


# start-up tuning for a JVM that lives seconds to minutes and carries little: its JIT never reaches C2 and its
# collector runs no background threads (the storage tool's, adr/0173; a lean broker's, adr/0211)
START_UP_TUNING = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
# what Settings.kafka_jvm selects (adr/0211)
JVM = {"server": ("-Xms256m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"),
       "lean": ("-Xms64m", *START_UP_TUNING)}


def _java(s: Settings, log4j: Path, heap_mb: int) -> list[str]:
    """A broker's JVM. With the class-data archive its classes are mapped from one file instead of found,
    read and verified jar by jar at every start (adr/0199): what the broker runs, its JIT and GC are the same;
    a JVM that cannot use the archive (another JDK build, changed jars) ignores it."""
    return ["java", *JVM[s.kafka_jvm], f"-Xmx{heap_mb}m", *_cds(),
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath()]


def _cds() -> list[str]:
    archive = class_archive()
    return [f"-XX:SharedArchiveFile={archive}"] if archive.exists() else []


def _tool_java(log4j: Path) -> list[str]:
    """A JVM for the storage tool, which runs for seconds: tuned for start-up like the registry's (C1 only,
    a small serial heap), about half the CPU of the brokers' JVM settings on a busy machine. The brokers'
    class archive holds most of what it loads from the same jars (1.8 -> 1.1 s of CPU, adr/0173)."""
    return ["java", "-Xmx256m", *START_UP_TUNING, *_cds(), "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath()]


def _format(java: list[str], props: Path, cluster_id: str, *extra: str) -> None:
    r = subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise StartupError(f"kafka storage format failed:\n{r.stdout}\n{r.stderr}")


def new_cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints, without starting a JVM for it: Kafka's ``Uuid.randomUuid()``,
    a random (version 4) UUID in URL-safe base64 without padding, drawn again when it starts with "-" (a
    command line would read it as an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _cluster_id(path: Path) -> str:
    if not path.exists():
        path.write_text(new_cluster_id())
    return path.read_text().strip()


def kafka_children(s: Settings) -> list[Child]:
    """The local Kafka: one PLAINTEXT node, or ``kafka_brokers`` SASL_SSL nodes (``cluster_settings`` first)."""
    if s.kafka_brokers < 2:
        return [kafka_child(s)]
    home = s.root / "kafka"
    home.mkdir(parents=True, exist_ok=True)
    log4j = home / "log4j2.yaml"
    log4j.write_text(_log4j(s))
    java = _tool_java(log4j)
    cluster_id = _cluster_id(home / "cluster.id")
    if s.kafka_security_protocol.upper() not in CLUSTER_PROTOCOLS:
        raise StartupError(f"the local cluster serves {' or '.join(CLUSTER_PROTOCOLS)}, not "
                           f"FLEETSTREAM_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol}")
    tls = cluster_tls(s)
    children, unformatted = [], []
    for i in range(s.kafka_brokers):
        node = home / f"node-{i + 1}"
        data = node / "data"
        node.mkdir(parents=True, exist_ok=True)
        props = node / "server.properties"
        write_private(props, _cluster_properties(s, i, data, tls).encode())  # it holds the SCRAM password
        if not (data / "meta.properties").exists():
            unformatted.append(props)
        node_log4j = node / "log4j2.yaml"  # a server log per node
        node_log4j.write_text(_log4j(s, f"kafka-{i + 1}-server"))
        children.append(Child(f"kafka-{i + 1}", _java(s, node_log4j, 512) + ["kafka.Kafka", str(props)],
                              s.logs_dir / f"kafka-{i + 1}.log"))
    if unformatted:
        _format_nodes(java, unformatted, cluster_id, "--add-scram", "SCRAM-SHA-512=[name="
                      f"{s.kafka_sasl_username},password={s.kafka_sasl_password}]")
    return children


def _format_nodes(java: list[str], props: list[Path], cluster_id: str, *extra: str) -> None:
    """The nodes' storage from one run of the storage tool (adr/0173): it formats the first node; every other
    node gets a copy with its own node id and a new directory id in ``meta.properties``. The rest of what the
    tool writes, the bootstrap checkpoint (metadata version, feature levels, the SCRAM user with a random
    salt), names no node, and only the first elected controller writes it into the metadata log: one JVM
    (10-70 s on a busy machine) instead of one per node, with the same result as formatting each."""
    _format(java, props[0], cluster_id, *extra)
    first = _log_dir(props[0])
    for other in props[1:]:
        node_id = next(line.partition("=")[2] for line in other.read_text().splitlines()
                       if line.startswith("node.id="))
        _copy_storage(first, _log_dir(other), {"cluster.id": cluster_id, "node.id": node_id,
                                               "directory.id": new_cluster_id()})


def _log_dir(props: Path) -> Path:
    return Path(next(line.partition("=")[2] for line in props.read_text().splitlines()
                     if line.startswith("log.dirs=")))


def kafka_child(s: Settings) -> Child:
    home = s.root / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(_properties(s, data))
    log4j = home / "log4j2.yaml"
    log4j.write_text(_log4j(s))
    java = _java(s, log4j, 768)
    if not (data / "meta.properties").exists():
        _format_from_template(log4j, data, _cluster_id(home / "cluster.id"))
    return Child("kafka", java + ["kafka.Kafka", str(props)], s.logs_dir / "kafka.log")


def _format_from_template(log4j: Path, data: Path, cluster_id: str) -> None:
    """A single node's storage as the storage tool writes it, without a JVM per stack (adr/0199): the tool
    formats once into the cache (per Kafka version and per text of ``_properties``); each stack copies that
    and writes its own cluster id and a new directory id into ``meta.properties``. The one other file the
    tool writes, the metadata log's first snapshot (the release's metadata version and feature levels), names
    neither: two formats with different cluster ids differ there only in CRCs and timestamps."""
    _copy_storage(_storage_template(log4j), data, {"cluster.id": cluster_id, "directory.id": new_cluster_id()})


def _copy_storage(formatted: Path, data: Path, ids: dict[str, str]) -> None:
    """``formatted`` (what the storage tool wrote) copied to ``data`` with the ``meta.properties`` keys in
    ``ids`` replaced; every one of them must be there."""
    staging = data.with_name(data.name + ".formatting")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(formatted, staging)
    meta = staging / "meta.properties"
    lines = meta.read_text().splitlines()
    if sorted(k for k in ids if any(line.startswith(f"{k}=") for line in lines)) != sorted(ids):
        raise StartupError(f"kafka storage {formatted}: meta.properties without {', '.join(ids)}")
    meta.write_text("".join(f"{k}={ids[k]}\n" if (k := line.partition("=")[0]) in ids else f"{line}\n"
                            for line in lines))
    staging.replace(data)


def _storage_template(log4j: Path) -> Path:
    """The storage tool's output for a single node, made once per Kafka version and per ``_properties``
    text (with the default settings: ports and paths do not reach the tool's output)."""
    import hashlib
    import tempfile

    text = _properties(Settings.model_construct(), Path("/storage-template"))
    template = jar_dir().parent / f"storage-template-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if (template / "meta.properties").exists():
        return template
    work = Path(tempfile.mkdtemp(prefix="storage-template-", dir=template.parent))
    try:
        props = work / "server.properties"
        props.write_text(text.replace("/storage-template", str(work / "data")))
        _format(_tool_java(log4j), props, new_cluster_id())
        try:
            (work / "data").rename(template)  # a concurrent stack's template may have won: same content
        except OSError:
            if not (template / "meta.properties").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return template


def kafka_ready(kafka: KafkaLike, brokers: int = 1) -> bool:
    """The cluster answers metadata with ``brokers`` brokers registered."""
    admin = clients(kafka).admin({"socket.timeout.ms": 2000, "log_level": 0})  # polled while it starts
    md = admin.list_topics(timeout=2)
    return len(md.brokers) >= brokers


def ensure_topics(kafka: KafkaLike, default_partitions: int) -> list[str]:
    """Creates the platform's topics that do not exist yet, with the factory's replication factor and
    min.insync.replicas (adr/0131); returns the names it created."""
    k = clients(kafka)
    admin = k.admin()
    existing = set(admin.list_topics(timeout=10).topics)
    new = [k.new_topic(t.name, t.partitions or default_partitions, t.config()) for t in topics.ALL
           if t.name not in existing]
    if not new:
        return []
    for fut in admin.create_topics(new, operation_timeout=30).values():
        try:
            fut.result()
        except Exception as exc:  # a concurrent creator already made it
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return [t.topic for t in new]


def record_class_archive() -> bool:
    """Records ``class_archive()`` from one start of a single broker on two free loopback ports, in a temp
    dir: started, topics created, a record written and read back through a consumer group, stopped cleanly
    (the JVM writes the archive as it exits; SIGKILL would not). Run once by scripts/setup.sh; True when the
    archive was written."""
    import shutil
    import tempfile
    import time

    tmp = Path(tempfile.mkdtemp(prefix="fleetstream-kafka-cds-"))
    recorded = tmp / "broker.jsa"
    port = _free_port_pair()
    s = Settings(data_dir=tmp / "data", kafka_port=port, kafka_controller_port=port + 1)
    s.logs_dir.mkdir(parents=True, exist_ok=True)
    child = kafka_child(s)
    child.argv = [a for a in child.argv if not a.startswith("-XX:SharedArchiveFile=")]
    child.argv.insert(1, f"-XX:ArchiveClassesAtExit={recorded}")
    child.start()
    try:
        child.wait_until(lambda: kafka_ready(s.kafka), 600, "kafka metadata")
        ensure_topics(s.kafka, s.kafka_partitions)
        k = clients(s.kafka)
        producer = k.producer({"log_level": 0})  # gone before the broker stops: no reconnect lines after it
        producer.produce(topics.DEAD_LETTER.name, b"class-archive")
        producer.flush(30)
        del producer
        consumer = k.consumer("class-archive", {"auto.offset.reset": "earliest", "log_level": 0})
        consumer.subscribe([topics.DEAD_LETTER.name])
        deadline = time.monotonic() + 60
        while consumer.poll(1.0) is None and time.monotonic() < deadline:
            pass
        consumer.close()
    finally:
        child.stop(timeout=120)
    written = recorded.exists() and recorded.stat().st_size > 0
    if written:
        staged = class_archive().with_suffix(f".{os.getpid()}.tmp")
        shutil.move(recorded, staged)
        staged.replace(class_archive())
    shutil.rmtree(tmp, ignore_errors=True)
    return written


def _free_port_pair() -> int:
    """A loopback port p with p + 1 free too (the broker's and its controller's listeners)."""
    import socket

    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise StartupError("no two adjacent free loopback ports")
