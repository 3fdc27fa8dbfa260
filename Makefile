# RMC Dialler. `make run` starts the product, `make test` runs the suite; both set up a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint fmt fuzz bench down clean deps system-deps bytecode lock

# Installs are reproducible: the exact versions (and hashes) of requirements-dev.lock, then our own
# package without resolving anything again. `make lock` after changing pyproject.toml's dependencies.
$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
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
	@command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd || { apt-get update -q && apt-get install -y -q mariadb-server; }
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }
	@command -v firefox-esr >/dev/null || { apt-get update -q && apt-get install -y -q firefox-esr; }
	@command -v docker-compose >/dev/null || { apt-get update -q && apt-get install -y -q docker-compose; }
	@command -v promtool >/dev/null || { apt-get update -q && apt-get install -y -q prometheus; }

# Our own modules' bytecode, written even where PYTHONDONTWRITEBYTECODE is set: the worker's sandbox
# re-imports a workflow's module for every workflow it runs, and without bytecode it compiles the source
# each time. Incremental: only changed modules are compiled again.
bytecode: deps
	@$(BIN)/python -m compileall -q dialler workflows activities api workers

run: deps system-deps bytecode
	$(BIN)/python -m workers.stack run

down:
	$(BIN)/python -m workers.stack down

test: deps system-deps bytecode
	$(BIN)/pytest -q --deselect tests/api/test_schemathesis.py

# Property-based fuzzing of every operation in the OpenAPI spec as agent, supervisor and admin: no 5xx.
fuzz: deps system-deps
	$(BIN)/pytest -q tests/api/test_schemathesis.py

lint: deps
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: down
	rm -rf .run
