#!/usr/bin/env bash
# Installs whatever is missing for fleetstream on a fresh Debian machine, and nothing twice:
#   - Debian packages: mosquitto (MQTT broker with dynamic security) + headers and a C compiler for its access
#     plugin, Java 17 + Maven (Kafka), PostgreSQL
#   - a Python venv (.venv) with fleetstream and its extras
#   - the Apache Kafka jars from Maven Central, cached in ~/.cache/fleetstream
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${FLEETSTREAM_VENV:-$ROOT/.venv}
CACHE=${FLEETSTREAM_CACHE:-$HOME/.cache/fleetstream}
KAFKA_VERSION=4.4.0
PY=${PYTHON:-python3}

need_apt=()
command -v mosquitto >/dev/null || need_apt+=(mosquitto mosquitto-clients)
# the broker's access plugin (fleetstream/stack/mosquitto_access.c, adr/0100) is compiled at first start
[ -f /usr/include/mosquitto_broker.h ] || need_apt+=(mosquitto-dev libmosquitto-dev)
[ -f /usr/include/openssl/x509.h ] || need_apt+=(libssl-dev)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
# the console's browser tests drive Debian's Chromium through Playwright (never `playwright install`, adr/0164)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=$VENV/.fleetstream-installed
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating venv $VENV"
  $PY -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python dependencies into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e ".[all,dev]"
  touch "$stamp"
fi

lib=$CACHE/kafka-$KAFKA_VERSION/lib
if ! ls "$lib"/kafka_2.13-$KAFKA_VERSION.jar >/dev/null 2>&1; then
  echo "setup: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $lib"
  mkdir -p "$lib"
  mvn -B -q -f scripts/kafka-pom.xml dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib"
fi
