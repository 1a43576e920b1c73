"""Apicurio Registry 3.0.9, the local stack's Schema Registry (adr/0140): the Quarkus bundle from Maven Central
that scripts/setup.sh caches, on Java 17, storing in an H2 file under the data dir. Tools use its
Confluent-compatible API, ``Settings.schema_registry_endpoint``."""

from __future__ import annotations

import os
from pathlib import Path

from runtime.schema_registry import SchemaRegistry
from runtime.settings import Settings

from .process import Child, StartupError

APICURIO_VERSION = "3.0.9"


def home() -> Path:
    cache = Path(os.environ.get("FLEETSTREAM_CACHE", Path.home() / ".cache" / "fleetstream"))
    return cache / f"apicurio-registry-{APICURIO_VERSION}"


def runner_jar() -> Path:
    jar = home() / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
    if not jar.exists():
        raise StartupError(f"Apicurio Registry missing in {home()}: run scripts/setup.sh (make up / make test do)")
    return jar


def java_argv(s: Settings, db: Path) -> list[str]:
    """The registry's command line. It serves a few calls per process start, so it is tuned for start-up
    and memory, not throughput: C1 only (half the start-up CPU), a small serial heap, few connections, and
    the class-data archive setup.sh records once (about 2.5x faster start-up) when there is one."""
    argv = ["java", "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
    archive = home() / "registry.jsa"
    if archive.exists():
        argv.append(f"-XX:SharedArchiveFile={archive}")
    return argv + [
        f"-Dquarkus.http.host={s.host}", f"-Dquarkus.http.port={s.schema_registry_port}",
        f"-Dapicurio.datasource.url=jdbc:h2:file:{db}", "-Dapicurio.datasource.jdbc.initial-size=2",
        "-Dapicurio.datasource.jdbc.min-size=2", "-Dapicurio.datasource.jdbc.max-size=10",
        # one schema text, one id, whatever its whitespace (Confluent's behaviour)
        "-Dapicurio.ccompat.use-canonical-hash=true",
        "-Dquarkus.log.category.\"io.quarkus.http.access-log\".level=WARN",
        "-jar", str(runner_jar())]


def registry_child(s: Settings) -> Child:
    data = s.root / "schema-registry"
    data.mkdir(parents=True, exist_ok=True)
    child = Child("schema-registry", java_argv(s, data / "registry"), s.logs_dir / "schema-registry.log", cwd=data)
    child.liveness = lambda: registry_ready(s)
    return child


def registry_ready(s: Settings) -> bool:
    reg = SchemaRegistry(s.schema_registry_endpoint, timeout=2)
    try:
        return reg.ready()
    finally:
        reg.close()
