#!/usr/bin/env bash
# Installs whatever is missing for fleetstream on a fresh Debian machine, and nothing twice:
#   - Debian packages: mosquitto (MQTT broker with dynamic security) + headers and a C compiler for its access
#     plugin, Java 17 + Maven (Kafka), PostgreSQL
#   - a Python venv (.venv) with fleetstream and its extras (installed by uv from PyPI, pip as the fallback)
#   - the Apache Kafka jars from Maven Central, cached in ~/.cache/fleetstream (fetched while pip installs)
#   - Apicurio Registry (the Schema Registry, adr/0140) from Maven Central, cached there too
#   - Apicurio Registry's Avro Kafka serde (a JVM decoder for the contract tests, adr/0143), cached there too
#   - AsyncAPI's official 3.0.0 JSON Schema (npm @asyncapi/specs), which docs/asyncapi.yaml is checked against
# Every step that takes a while says what it does, says it is still at it every 30 s, and says how long it took;
# its own output goes to a log under ~/.cache/fleetstream/logs, shown only when it fails (adr/0186).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${FLEETSTREAM_VENV:-$ROOT/.venv}
CACHE=${FLEETSTREAM_CACHE:-$HOME/.cache/fleetstream}
KAFKA_VERSION=4.4.0
APICURIO_VERSION=3.0.9  # the last release built for Java 17 (3.3 needs 21)
ASYNCAPI_SPECS_VERSION=6.11.1
PY=${PYTHON:-python3}
mkdir -p "$CACHE/logs"
# shellcheck source=scripts/steps.sh
source scripts/steps.sh

need_apt=()
command -v mosquitto >/dev/null || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)  # docs/devices examples (adr/0183)
command -v coap-client-notls >/dev/null || need_apt+=(libcoap3-bin)   # the stock CoAP client (adr/0184)
# the broker's access plugin (fleetstream/stack/mosquitto_access.c, adr/0100) is compiled at first start
[ -f /usr/include/mosquitto_broker.h ] || need_apt+=(mosquitto-dev libmosquitto-dev)
[ -f /usr/include/mosquitto.h ] || need_apt+=(libmosquitto-dev)  # the C device example (docs/devices)
[ -f /usr/include/openssl/x509.h ] || need_apt+=(libssl-dev)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v npm >/dev/null || need_apt+=(npm)  # fetches AsyncAPI's JSON Schema (the contract's validation)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
# the console's browser tests drive Debian's Chromium through Playwright (never `playwright install`, adr/0164)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  step "setup: Debian packages ${need_apt[*]}" "$CACHE/logs/apt.log" \
    bash -c "$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ${need_apt[*]}"
fi


# The JVM artifacts and the AsyncAPI schemas are network-bound: three chains fetch them beside the venv and the
# Python install (adr/0167). Maven fetches stay in one chain (Kafka, then the serde) because they share the local
# Maven repository; the registry bundle comes straight from Maven Central over HTTPS (checked against its .sha1),
# so it needs no Maven plugin and runs beside them, followed by its class-data archive.
lib=$CACHE/kafka-$KAFKA_VERSION/lib
serde=$CACHE/apicurio-serde-1/lib  # bump the suffix when scripts/apicurio-serde-pom.xml changes
registry=$CACHE/apicurio-registry-$APICURIO_VERSION
jsa=$registry/registry.jsa
specs=$CACHE/asyncapi-specs-$ASYNCAPI_SPECS_VERSION
MAVEN_CENTRAL=https://repo.maven.apache.org/maven2

fetch_kafka() {
  mkdir -p "$lib"
  mvn -B -q -Dstyle.color=never -f scripts/kafka-pom.xml dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$lib" || { rm -f "$lib"/kafka_2.13-$KAFKA_VERSION.jar; return 1; }
}

fetch_serde() {
  rm -rf "$serde.tmp"
  mvn -B -q -Dstyle.color=never -s scripts/maven-central-only.xml -f scripts/apicurio-serde-pom.xml \
    dependency:copy-dependencies -DincludeScope=runtime -DexcludeArtifactIds=kafka-clients -DoutputDirectory="$serde.tmp"
  mv "$serde.tmp" "$serde"
}

fetch_registry() {
  # the runnable Quarkus bundle is the `all` classifier, a tar.gz (109 MB)
  local url=$MAVEN_CENTRAL/io/apicurio/apicurio-registry-app/$APICURIO_VERSION/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz
  rm -rf "$registry.tmp" && mkdir -p "$registry.tmp"
  curl -fsSL --retry 3 -o "$registry.tmp/app.tar.gz" "$url"
  echo "$(curl -fsSL --retry 3 "$url.sha1" | cut -c1-40)  $registry.tmp/app.tar.gz" | sha1sum -c --quiet -
  tar --no-same-owner -xzf "$registry.tmp/app.tar.gz" -C "$registry.tmp"
  rm "$registry.tmp/app.tar.gz"
  rm -rf "$registry" && mv "$registry.tmp" "$registry"
}

# A class-data archive recorded from one start of the registry: later starts load classes from it (about
# 2.5x less start-up time and CPU, adr/0140). Recorded once per cache; a JVM that cannot use it ignores it.
record_registry_archive() {
  local tmp port pid
  tmp=$(mktemp -d)
  port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:ArchiveClassesAtExit="$tmp/registry.jsa" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" -Dapicurio.datasource.url="jdbc:h2:file:$tmp/registry" \
    -jar "$registry/apicurio-registry-app-$APICURIO_VERSION-runner.jar" >"$tmp/registry.log" 2>&1 &
  pid=$!
  # wait for its API, then register and check one schema so those classes are recorded too
  $PY - "$port" <<'PYEOF' || echo "setup: the registry did not start for the archive (it works without one): $tmp/registry.log"
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}/apis/ccompat/v7"
def call(path, body=None, method=None):
    req = urllib.request.Request(base + path, data=body and json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    return urllib.request.urlopen(req, timeout=5).read()
deadline = time.monotonic() + 600
while True:
    try:
        call("/subjects")
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
schema = {"schema": json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]})}
call("/config/warmup-value", {"compatibility": "BACKWARD"}, "PUT")
call("/subjects/warmup-value/versions", schema)
call("/compatibility/subjects/warmup-value/versions/latest", schema)
PYEOF
  kill -TERM "$pid"; wait "$pid" || true  # the archive is written as the JVM exits
  [ -s "$tmp/registry.jsa" ] && mv "$tmp/registry.jsa" "$jsa"
  rm -rf "$tmp"
}

fetch_specs() {
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack -q "@asyncapi/specs@$ASYNCAPI_SPECS_VERSION" >/dev/null && tar -xzf asyncapi-specs-*.tgz)
  mkdir -p "$specs"
  # the bundle with local references only (#/definitions/...), so any JSON Schema validator resolves it offline
  cp "$tmp/package/schemas/3.0.0-without-\$id.json" "$specs/asyncapi-3.0.0.json"
  rm -rf "$tmp"
}

fetches=()
if ! ls "$lib"/kafka_2.13-$KAFKA_VERSION.jar >/dev/null 2>&1 || [ ! -d "$serde" ]; then
  {
    if ! ls "$lib"/kafka_2.13-$KAFKA_VERSION.jar >/dev/null 2>&1; then
      step "setup: Apache Kafka $KAFKA_VERSION jars from Maven Central into $lib" "$CACHE/logs/kafka-jars.log" \
        fetch_kafka || exit 1
    fi
    if [ ! -d "$serde" ]; then
      step "setup: Apicurio Registry's Avro serde (the JVM decoder of the contract tests) into $serde" \
        "$CACHE/logs/apicurio-serde.log" fetch_serde || exit 1
    fi
  } &
  fetches+=($!)
fi
if [ ! -f "$registry/apicurio-registry-app-$APICURIO_VERSION-runner.jar" ] || [ ! -f "$jsa" ]; then
  {
    if [ ! -f "$registry/apicurio-registry-app-$APICURIO_VERSION-runner.jar" ]; then
      step "setup: Apicurio Registry $APICURIO_VERSION from Maven Central into $registry" \
        "$CACHE/logs/apicurio-registry.log" fetch_registry || exit 1
    fi
    # the registry works without its archive: a failed recording is reported, not fatal
    step "setup: recording Apicurio Registry's class-data archive (once; faster start-ups)" \
      "$CACHE/logs/apicurio-jsa.log" record_registry_archive || true
  } &
  fetches+=($!)
fi
if [ ! -f "$specs/asyncapi-3.0.0.json" ]; then
  step "setup: AsyncAPI's JSON Schemas (@asyncapi/specs $ASYNCAPI_SPECS_VERSION) into $specs" \
    "$CACHE/logs/asyncapi-specs.log" fetch_specs &
  fetches+=($!)
fi

stamp=$VENV/.fleetstream-installed
if [ ! -x "$VENV/bin/python" ]; then
  step "setup: creating venv $VENV" "$CACHE/logs/venv.log" "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # PYTHONWARNINGS: setuptools' notices about editable installs are boxes of asterisks on every fresh set-up
  # uv (its binary comes in the PyPI wheel) installs the same versions pip resolves in ~10 s instead of ~80
  # (adr/0197); pip stays the fallback where uv cannot be had
  step "setup: Python dependencies into $VENV" "$CACHE/logs/pip.log" \
    env PYTHONWARNINGS=ignore::UserWarning bash -c \
    "{ '$VENV/bin/pip' install -q --progress-bar off uv && '$VENV/bin/uv' pip install -q --python '$VENV/bin/python' -e '.[all,dev]'; } \
     || { '$VENV/bin/pip' install -q --progress-bar off --upgrade pip && '$VENV/bin/pip' install -q --progress-bar off -e '.[all,dev]'; }"
  # the third-party Sparkplug edge node the tests drive (adr/0155); it pins paho-mqtt<2 for its own client,
  # which runs unchanged on paho 2 (VERSION1 callbacks), so it comes without its dependencies
  "$VENV/bin/pip" install -q --no-deps "pysparkplug==0.6.1"
  touch "$stamp"
fi
# Bytecode for what the platform's processes and the test sessions import, written once here (adr/0199): uv
# does not compile at install as pip does, and a process that may not write __pycache__ (PYTHONDONTWRITEBYTECODE,
# a read-only venv) compiles all it imports from source at each start: ~4 s of CPU more for a gateway, ~10 s for
# a stack's four platform processes, ~1.5 s for each CLI call. Importing the entry modules once compiles exactly
# those (~1,650 modules, ~11 s of CPU; compileall of the whole venv compiled 7,900 in ~43 s). Runs while the
# fetches above still download.
bytecode=$VENV/.fleetstream-bytecode
if [ ! -f "$bytecode" ] || [ "$stamp" -nt "$bytecode" ]; then
  step "setup: bytecode for the platform's modules" "$CACHE/logs/bytecode.log" "$VENV/bin/python" -c '
import importlib, sys
sys.dont_write_bytecode = False
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # only a cache: a module that does not import here is compiled where it runs
        print(f"{name}: {exc!r}")
' fleetstream.cli fleetstream.stack.supervisor fleetstream.bench.cli gateway.app streams.worker sinks.clickhouse.runner \
    connectors.mqtt.__main__ connectors.coap.__main__ connectors.modbus.__main__ connectors.opcua.__main__ \
    pytest xdist hypothesis schemathesis
  touch "$bytecode"
fi
for pid in "${fetches[@]}"; do
  wait "$pid"
done

# The brokers' class-data archive, like the registry's (adr/0199): recorded from one start of a single broker
# (the platform's topics created, a record written and read back), once per jar set; it needs the Kafka jars and
# the venv. The brokers' JIT, GC and heap are unchanged; they start without it if the recording fails.
if [ ! -f "$lib/../broker.jsa" ]; then
  step "setup: recording the Kafka broker's class-data archive (once; faster start-ups)" "$CACHE/logs/kafka-cds.log" \
    "$VENV/bin/python" -c 'import sys; from fleetstream.stack.kafka import record_class_archive as r; sys.exit(0 if r() else 1)' \
    || true
fi
