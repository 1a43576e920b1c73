#!/usr/bin/env bash
# Installs whatever is missing for fleetstream on a fresh Debian machine, and nothing twice:
#   - Debian packages: mosquitto (MQTT broker with dynamic security) + headers and a C compiler for its access
#     plugin, Java 17 + Maven (Kafka), PostgreSQL
#   - a Python venv (.venv) with fleetstream and its extras
#   - the Apache Kafka jars from Maven Central, cached in ~/.cache/fleetstream (fetched while pip installs)
# Every step that takes a while says what it does, says it is still at it every 30 s, and says how long it took;
# its own output goes to a log under ~/.cache/fleetstream/logs, shown only when it fails (adr/0186).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${FLEETSTREAM_VENV:-$ROOT/.venv}
CACHE=${FLEETSTREAM_CACHE:-$HOME/.cache/fleetstream}
KAFKA_VERSION=4.4.0
PY=${PYTHON:-python3}
mkdir -p "$CACHE/logs"
# shellcheck source=scripts/steps.sh
source scripts/steps.sh

need_apt=()
command -v mosquitto >/dev/null || need_apt+=(mosquitto mosquitto-clients)
# the broker's access plugin (fleetstream/stack/mosquitto_access.c, adr/0100) is compiled at first start
[ -f /usr/include/mosquitto_broker.h ] || need_apt+=(mosquitto-dev libmosquitto-dev)
[ -f /usr/include/openssl/x509.h ] || need_apt+=(libssl-dev)
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  step "setup: Debian packages ${need_apt[*]}" "$CACHE/logs/apt.log" \
    bash -c "$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ${need_apt[*]}"
fi

lib=$CACHE/kafka-$KAFKA_VERSION/lib
kafka_pid=""
if ! ls "$lib"/kafka_2.13-$KAFKA_VERSION.jar >/dev/null 2>&1; then
  mkdir -p "$lib"
  # network-bound: runs beside the pip install below
  step "setup: Apache Kafka $KAFKA_VERSION jars from Maven Central into $lib" "$CACHE/logs/kafka-jars.log" \
    mvn -B -q -f scripts/kafka-pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" &
  kafka_pid=$!
fi

stamp=$VENV/.fleetstream-installed
if [ ! -x "$VENV/bin/python" ]; then
  step "setup: creating venv $VENV" "$CACHE/logs/venv.log" "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # PYTHONWARNINGS: setuptools' notices about editable installs are boxes of asterisks on every fresh set-up
  step "setup: Python dependencies into $VENV" "$CACHE/logs/pip.log" \
    env PYTHONWARNINGS=ignore::UserWarning bash -c \
    "'$VENV/bin/pip' install -q --progress-bar off --upgrade pip && '$VENV/bin/pip' install -q --progress-bar off -e '.[all,dev]'"
  touch "$stamp"
fi
if [ -n "$kafka_pid" ]; then
  wait "$kafka_pid" || { rm -f "$lib"/kafka_2.13-$KAFKA_VERSION.jar; exit 1; }
fi
