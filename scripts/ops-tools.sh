#!/usr/bin/env bash
# Installs (once, idempotently) the tools that `make lint` and tests/ops use to check the deployment
# artefacts statically (adr/0097). Everything lands in ~/.cache/fleetstream, never in the repo:
#   - bin/helm        Helm v3, built from the Go module proxy (~2 min on 2 cores, once)
#   - bin/actionlint  GitHub Actions workflow linter, built from the Go module proxy (~15 s, once)
#   - ops-venv/       a separate venv with checkov, check-jsonschema and kubernetes-validate; separate
#                     because their pins (click, networkx, ...) conflict with faust-streaming's
# Not installable here: terraform (HashiCorp ships binaries only; its and OpenTofu's go.mod carry replace
# directives, so `go install` refuses them). Tests use one from PATH when present and skip `fmt` otherwise.
# Set FLEETSTREAM_SKIP_OPS_TOOLS=1 to skip this step entirely (tests that need a tool then say so and skip).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${FLEETSTREAM_CACHE:-$HOME/.cache/fleetstream}
BIN=$CACHE/bin
OPS_VENV=$CACHE/ops-venv
HELM_VERSION=v3.22.0
ACTIONLINT_VERSION=v1.7.12
OPS_PIP=("checkov==3.3.30" "check-jsonschema==0.39.0" "kubernetes-validate==1.37.0")
PY=${PYTHON:-python3}

[ "${FLEETSTREAM_SKIP_OPS_TOOLS:-0}" = "1" ] && { echo "ops-tools: skipped (FLEETSTREAM_SKIP_OPS_TOOLS=1)"; exit 0; }
mkdir -p "$BIN"
command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"; } || true

go_tool() {  # name module version
  local name=$1 module=$2 version=$3 stamp=$BIN/.$1-$3
  [ -x "$BIN/$name" ] && [ -f "$stamp" ] && return 0
  if ! command -v go >/dev/null; then
    echo "ops-tools: no Go toolchain; $name not installed (tests needing it will skip and say why)" >&2
    return 0
  fi
  echo "ops-tools: building $name $version from the Go module proxy into $BIN (once)"
  if GOBIN=$BIN GOFLAGS=-trimpath nice -n 10 go install -ldflags="-s -w" "$module@$version"; then
    touch "$stamp"
  else
    echo "ops-tools: building $name failed; tests needing it will skip and say why" >&2
  fi
}

go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"

stamp=$OPS_VENV/.fleetstream-$(echo "${OPS_PIP[*]}" | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  echo "ops-tools: installing ${OPS_PIP[*]} into $OPS_VENV (once)"
  [ -x "$OPS_VENV/bin/python" ] || $PY -m venv "$OPS_VENV"
  "$OPS_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$OPS_VENV/bin/pip" install -q "${OPS_PIP[@]}"
  touch "$stamp"
fi
