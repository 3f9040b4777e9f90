# Leaderboard: developer entry points. `make` alone lists the targets.
# Everything runs from a fresh clone on Debian with python3, java 17 and maven: missing Debian
# packages (redis-server, postgresql, python3-venv) are installed on the way.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LB := $(BIN)/leaderboard
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv up down status run demo test test-unit test-faults lint bench bench-tools browser clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@if ! [ -x $(BIN)/python ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    rm -rf $(VENV); \
	    echo "python3 -m venv failed: installing python3-venv"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv >/dev/null; \
	    $(PYTHON) -m venv $(VENV); }; \
	fi
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP) ## Create .venv and install the package (only when pyproject.toml changed)

up: venv ## Start Kafka, Redis and PostgreSQL (installs what is missing; idempotent)
	$(LB) stack up

down: venv ## Stop the services that `make up` started
	$(LB) stack down

status: venv ## Show which services are up, ours or external
	$(LB) stack status

run: up ## The main job: stack, workers, gateway and a simulator; a live board (Ctrl-C stops)
	$(LB) demo

demo: run ## Alias of run

lint: venv ## ruff check (incl. bandit rules), ruff format --check, mypy, pip-audit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@out=$$($(BIN)/pip-audit --progress-spinner off --skip-editable --strict 2>&1); rc=$$?; \
	if [ $$rc -eq 0 ]; then echo "pip-audit: no known vulnerabilities"; \
	elif echo "$$out" | grep -qE "Found [0-9]+ known vulnerabilit"; then echo "$$out"; exit 1; \
	elif echo "$$out" | grep -q -e "could not be audited" -e "ConnectionError" -e "NameResolutionError" -e "not found on PyPI"; then \
	  echo "pip-audit: SKIPPED: no vulnerability service reachable from this machine, dependencies NOT audited" >&2; \
	else echo "$$out"; exit $$rc; fi

browser: ## Install Debian's chromium for the browser test (when missing)
	@command -v chromium >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: venv up browser lint ## Everything CI runs: venv, stack up, lint, pytest (no tests = failure)
	@set +e; $(BIN)/pytest -p no:cacheprovider --timeout=300 -ra $(PYTEST_ARGS) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

test-unit: venv ## Fast tier, no service: tests/unit and the store contract in memory (seconds)
	$(BIN)/pytest -p no:cacheprovider --timeout=120 -q -m "not integration" $(PYTEST_ARGS) tests/unit tests/contract

test-faults: venv up ## Fault-injection suite, full form (long): crashes, outages, rebalance, gateway
	LEADERBOARD_FAULTS=full $(BIN)/pytest -p no:cacheprovider --timeout=900 -ra -m faults $(PYTEST_ARGS) tests/faults
	$(BIN)/python scripts/reliability_report.py

bench-tools: ## Install Debian's wrk for the HTTP benchmarks (when missing)
	@command -v wrk >/dev/null || { echo "installing wrk (the HTTP load generator of the bench)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; }

bench: up bench-tools ## Run the benchmarks (leaderboard bench; --quick: make bench BENCH_ARGS=--quick)
	$(LB) bench $(BENCH_ARGS)

clean: ## Stop the stack, delete its data (.stack) and caches; keeps .venv
	-@[ -x $(LB) ] && $(LB) stack down --purge
	rm -rf .stack .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
