# The two set-up commands are `make up` and `make test`; each installs whatever is missing first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup up down status test bench lint clean ops-tools

setup:
	@bash scripts/setup.sh

up: setup
	@$(BIN)/fleetstream up --with-fleet

down:
	@$(BIN)/fleetstream down

status:
	@$(BIN)/fleetstream status

test: setup ops-tools
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

# helm, actionlint (Go module proxy) and checkov & co. (side venv) for tests/ops; once, cached (adr/0097)
ops-tools:
	@bash scripts/ops-tools.sh

bench: setup
	@$(BIN)/fleetstream bench --quick $(BENCH_ARGS)  # e.g. BENCH_ARGS="--port-offset 500"

# Static checks only (no stack): ruff, then the chart, Terraform, workflows, image, Compose, alerts and
# capacity model through tests/ops without the integration tests.
lint: setup ops-tools
	@$(BIN)/ruff check fleetstream schemas connectors streams sinks gateway tests ops
	@$(BIN)/python -m pytest tests/ops -m "not integration" -q -p no:cacheprovider

clean:
	rm -rf .fleetstream
