# DiracX development tasks. `make demo` and `make test` work on a fresh machine with only
# Python 3 and make: they install uv from PyPI when it is missing (into .tools/uv), sync the
# workspace from uv.lock, and, for the tests, install PostgreSQL's server when it is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv on PATH if there is one, else our own copy (installed on first use by the rule below),
# put first on the PATH of everything make runs (the packaging tests build wheels with uv)
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/uv/bin/uv)
export PATH := $(patsubst %/,%,$(dir $(UV))):$(PATH)
# CI (CI=true) installs exactly uv.lock and fails if it is stale; locally, sync updates it
SYNC_FLAGS := $(if $(filter true 1 yes,$(CI)),--locked,)
RUN := $(UV) run --no-sync
# never fetch a Python build from the network: use the machine's Python 3.11+
export UV_PYTHON_DOWNLOADS ?= manual

# the src/ dirs that hold Python code (mypy refuses a directory without any): the diracx-*
# packages, and the extensions' (extensions/<name>/src/<package>/)
SRC_DIRS = $(sort $(foreach f,$(wildcard diracx-*/src/diracx/*/*.py),$(firstword $(subst /, ,$(f)))/src) \
	$(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(wildcard extensions/*/src/*/__init__.py))))))

.PHONY: help demo test lint typecheck importlint pytest client bench sync postgresql tools

help:
	@echo "make demo        run the example pipeline on the embedded engine, twice"
	@echo "make test        lint, type check, import contracts and the whole test suite"
	@echo "make lint        ruff check and ruff format --check"
	@echo "make typecheck   mypy on the packages' src/ directories"
	@echo "make importlint  import contracts (.importlinter): the package layering"
	@echo "make pytest      the test suite only (PYTEST_ARGS=... to pass options)"
	@echo "make client      regenerate diracx-client from the service's OpenAPI spec"
	@echo "make bench       run every benchmark in benchmarks/"
	@echo "make sync        install uv if needed, then the workspace (uv sync --all-packages)"

$(CURDIR)/.tools/uv/bin/uv:
	build-support/install-uv "$(CURDIR)/.tools/uv"

sync: $(UV)
	$(UV) sync --all-packages $(SYNC_FLAGS)

postgresql:
	build-support/ensure-postgresql

# redis-server, docker-registry, busybox-static, bubblewrap: servers and tools the tests start
tools:
	build-support/ensure-debian-tools

demo: sync
	$(RUN) python examples/release_pipeline/run_demo.py

# -k: run every check even when one fails, so one run reports all of them (and fails)
test: sync postgresql tools
	$(MAKE) --no-print-directory -k lint typecheck importlint pytest

lint: sync
	status=0; \
	$(RUN) ruff check . || status=1; \
	$(RUN) ruff format --check . || status=1; \
	exit $$status

typecheck: sync
	$(RUN) mypy $(SRC_DIRS)

importlint: sync
	$(RUN) lint-imports

pytest: sync postgresql tools
	$(RUN) pytest $(PYTEST_ARGS)

client: sync
	$(RUN) python scripts/generate_client.py

bench: sync
	@shopt -s nullglob; scripts=(benchmarks/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmark in benchmarks/"; exit 0; fi; \
	for script in "$${scripts[@]}"; do \
		echo "== $$script"; \
		$(RUN) python "$$script"; \
	done
