# The two set-up commands are `make up` and `make test`; each installs whatever is missing first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup up down status test bench lint clean

setup:
	@bash scripts/setup.sh

up: setup
	@$(BIN)/fleetstream up --with-fleet

down:
	@$(BIN)/fleetstream down

status:
	@$(BIN)/fleetstream status

test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	@$(BIN)/fleetstream bench --quick $(BENCH_ARGS)  # e.g. BENCH_ARGS="--port-offset 500"

lint: setup
	@$(BIN)/ruff check fleetstream schemas connectors streams sinks gateway tests

clean:
	rm -rf .fleetstream
