# The two set-up commands are `make up` and `make test`; each installs whatever is missing first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=
CHAOS_ARGS ?=

.PHONY: setup up down status test screenshots bench bench-queries chaos chaos-kafka lint clean ops-tools

setup:
	@bash scripts/setup.sh

up: setup
	@$(BIN)/fleetstream up --with-fleet

down:
	@$(BIN)/fleetstream down

status:
	@$(BIN)/fleetstream status

# the ops tools install in the background while the suite runs; tests/ops wait for them (adr/0186)
# two pytest-xdist workers, each with its own stack: the suite mostly waits on Kafka and the stacks, not on
# the CPU (adr/0194); TEST_WORKERS=0 runs it in one session as before. Under loadfile the suite schedules itself:
# tests/cluster and tests/console are one scope each, the slowest scopes go first (tests/utils/scheduling.py, adr/0195)
TEST_WORKERS ?= 2
test: setup
	@bash scripts/ops-tools.sh --background
	@$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# the console's pages in docs/console/*.png, taken by its browser tests against a test stack (adr/0164)
screenshots: setup
	@FLEETSTREAM_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/python -m pytest tests/console -q $(PYTEST_ARGS)

# actionlint (Go module proxy), checkov & co. and helm (Helm v4 SDK wheel) in a side venv, for tests/ops; once, cached (adr/0097, adr/0179)
ops-tools:
	@bash scripts/ops-tools.sh

bench: setup
	@$(BIN)/fleetstream bench --quick $(BENCH_ARGS)  # e.g. BENCH_ARGS="--port-offset 500"
	@$(BIN)/fleetstream bench --queries $(BENCH_ARGS)

# REST reads under 50 concurrent clients against the gateway alone (adr/0185)
bench-queries: setup
	@$(BIN)/fleetstream bench --queries $(BENCH_ARGS)

# Reliability: own stack at steady load, kill -9 of each component in turn, report under bench/results
# (adr/0113); e.g. CHAOS_ARGS="kafka,postgres --port-offset 500"
chaos: setup
	@$(BIN)/fleetstream bench --chaos $(CHAOS_ARGS)

# broker failover on the local 3-node SASL cluster (adr/0133): kill -9 the active controller, then the busiest
# partition leader, at a steady 2,000 msg/s; acked vs stored, throughput recovery, p99 during the failover
chaos-kafka: setup
	@$(BIN)/fleetstream bench --chaos kafka-controller,kafka-leader --kafka-brokers 3 --rate 2000 \
		--label chaos-kafka-cluster $(CHAOS_ARGS)

# Static checks only (no stack): ruff, then the chart, Terraform, workflows, image, Compose, alerts and
# capacity model through tests/ops without the integration tests.
lint: setup ops-tools
	@$(BIN)/ruff check fleetstream schemas runtime connectors streams sinks gateway tests ops
	@$(BIN)/lint-imports
	@$(BIN)/python -m pytest tests/ops -m "not integration" -q -p no:cacheprovider

clean:
	rm -rf .fleetstream .fleetstream.master.key
