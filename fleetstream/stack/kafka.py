"""Apache Kafka 4.4, single-node KRaft, run from the Maven Central jars that scripts/setup.sh caches."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runtime.settings import Settings
from schemas import topics

from .process import Child, StartupError

KAFKA_VERSION = "4.4.0"


def jar_dir() -> Path:
    cache = Path(os.environ.get("FLEETSTREAM_CACHE", Path.home() / ".cache" / "fleetstream"))
    return cache / f"kafka-{KAFKA_VERSION}" / "lib"


def classpath() -> str:
    lib = jar_dir()
    if not (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        raise StartupError(f"Kafka jars missing in {lib}: run scripts/setup.sh (make up / make test do)")
    return f"{lib}/*"


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


def _log4j(s: Settings) -> str:
    return f"""Configuration:
  status: warn
  Appenders:
    File:
      name: F
      fileName: "{s.logs_dir / 'kafka-server.log'}"
      PatternLayout: {{pattern: "[%d] %p %m (%c)%n"}}
  Loggers:
    Root: {{level: INFO, AppenderRef: [{{ref: F}}]}}
    Logger:
      - {{name: kafka.log, level: WARN}}
      - {{name: org.apache.kafka.storage, level: WARN}}
"""


def kafka_child(s: Settings) -> Child:
    home = s.root / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(_properties(s, data))
    log4j = home / "log4j2.yaml"
    log4j.write_text(_log4j(s))
    java = ["java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath()]
    if not (data / "meta.properties").exists():
        cluster_id = subprocess.run(java + ["kafka.tools.StorageTool", "random-uuid"], check=True,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise StartupError(f"kafka storage format failed:\n{r.stdout}\n{r.stderr}")
    return Child("kafka", java + ["kafka.Kafka", str(props)], s.logs_dir / "kafka.log")


def kafka_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    md = admin.list_topics(timeout=2)
    return bool(md.brokers)


def ensure_topics(bootstrap: str, default_partitions: int) -> list[str]:
    """Creates the platform's topics that do not exist yet; returns the names it created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t.name, num_partitions=t.partitions or default_partitions, replication_factor=1,
                    config=t.config()) for t in topics.ALL if t.name not in existing]
    if not new:
        return []
    for fut in admin.create_topics(new, operation_timeout=30).values():
        try:
            fut.result()
        except Exception as exc:  # a concurrent creator already made it
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return [t.topic for t in new]
