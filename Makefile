# The two set-up commands are `make up` and `make test`; each installs whatever is missing first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

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
	@$(BIN)/fleetstream bench --quick

lint: setup
	@$(BIN)/ruff check fleetstream schemas connectors streams sinks gateway tests

clean:
	rm -rf .fleetstream
