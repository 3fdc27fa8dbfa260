# RMC Dialler. `make run` starts the product, `make test` runs the suite; both set up a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Installers write here, not to the terminal: one line per step, and the log's path if one fails.
INSTALL_LOG := .run/install.log
# $(call step,what,command): run command quietly, logging its output; print one line.
step = { mkdir -p .run && printf '%s\n' "$(1)..." && { ( $(2) ) >>$(INSTALL_LOG) 2>&1 || { echo "$(1) failed: see $(INSTALL_LOG)" >&2; exit 1; }; }; }

.PHONY: run demo test lint fmt fuzz bench bench-reports bench-pacing chaos down clean deps system-deps bytecode lock

# Installs are reproducible: the exact versions (and hashes) of requirements-dev.lock, then our own
# package without resolving anything again. `make lock` after changing pyproject.toml's dependencies.
$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(BIN)/python || $(call step,creating $(VENV),$(PYTHON) -m venv $(VENV))
	@$(call step,installing Python packages,$(BIN)/pip install --require-hashes -r requirements-dev.lock && $(BIN)/pip install --no-deps -e .)
	@touch $(STAMP)

deps: $(STAMP)

# The locks: requirements.lock (what the image runs) and requirements-dev.lock (plus the tools and
# test dependencies), for Python 3.11 on any platform, with hashes.
lock:
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes --no-header -o requirements-dev.lock

# Debian packages the stack needs: MariaDB for the binlog replica, Chromium and Firefox ESR for the
# browser tests (Playwright drives Debian's own browsers; it never downloads one), docker-compose and
# promtool (package prometheus) for the static checks of docker-compose.yml and the alert rules.
system-deps:
	@command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd || $(call step,installing mariadb-server (apt),apt-get update -q && apt-get install -y -q mariadb-server)
	@command -v chromium >/dev/null || $(call step,installing chromium (apt),apt-get update -q && apt-get install -y -q chromium)
	@command -v firefox-esr >/dev/null || $(call step,installing firefox-esr (apt),apt-get update -q && apt-get install -y -q firefox-esr)
	@command -v docker-compose >/dev/null || $(call step,installing docker-compose (apt),apt-get update -q && apt-get install -y -q docker-compose)
	@command -v promtool >/dev/null || $(call step,installing prometheus for promtool (apt),apt-get update -q && apt-get install -y -q prometheus)

# Our own modules' bytecode, written even where PYTHONDONTWRITEBYTECODE is set: the worker's sandbox
# re-imports a workflow's module for every workflow it runs, and without bytecode it compiles the source
# each time. Incremental: only changed modules are compiled again.
bytecode: deps
	@$(BIN)/python -m compileall -q dialler workflows activities api workers devstack

run: deps system-deps bytecode
	@$(BIN)/python -m devstack.stack run

# The same stack with the dialler's clock shifted into the next calling hours (DIALLER_CLOCK_OFFSET_S,
# development only): at night or on a Sunday the demo still has customers to call.
demo: deps system-deps bytecode
	@$(BIN)/python -m devstack.stack demo

down:
	@$(BIN)/python -m devstack.stack down

# The suite mostly waits (on Temporal, the emulator's calls, the browsers): pytest-xdist runs it in
# TEST_WORKERS processes, each with its own Temporal, MariaDB, moto and emulator (tests/conftest.py).
TEST_WORKERS ?= 3
test: deps system-deps bytecode
	$(BIN)/pytest -q -n $(TEST_WORKERS) --deselect tests/api/test_schemathesis.py

# Property-based fuzzing of every operation in the OpenAPI spec as agent, supervisor and admin: no 5xx.
fuzz: deps system-deps
	$(BIN)/pytest -q tests/api/test_schemathesis.py

# The reports on 90 days of a 200-agent floor (about 2 million calls) in a bench database of its own:
# p95 per report and period, and the 90-day CSVs (docs/PERFORMANCE.md). BENCH_ARGS="--scale 0.25" for less.
bench-reports: deps
	$(BIN)/python bench/reports.py $(BENCH_ARGS)

# The pacing simulator (docs/PACING.md): progressive against predictive on the product's pacing
# functions, 10,000 agent-hours per configuration, and the plot. BENCH_ARGS="--agent-hours 1000" for less.
bench-pacing: deps
	$(BIN)/python bench/pacing_sim.py --plot docs/pacing.png $(BENCH_ARGS)

# The chaos run (docs/RELIABILITY.md): the product on services of its own under simulated agents while
# processes are SIGKILLed, Temporal restarts, the worker pauses, Redis is flushed and the replica is cut;
# then the invariant checker. Full size by default; CHAOS_ARGS="--agents 4 --minutes 10 --faults-each 3" for less.
chaos: deps system-deps bytecode
	$(BIN)/python bench/chaos.py --agents 8 --users 20000 --minutes 240 --faults-each 20 $(CHAOS_ARGS)

lint: deps
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: down
	rm -rf .run
