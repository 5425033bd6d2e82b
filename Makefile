# Every target installs what it needs first: `make up` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: install up test test-pg test-all test-faults lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The browser tests (tests/browser) drive Debian's chromium; Playwright's own download is not used.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'

install: $(BIN)/.installed

## Start Improve with demo data: Prefect server and flows, web app, mail sink (Ctrl-C stops).
up: install
	$(BIN)/improve up --demo

## The whole test suite on SQLite (unit, flow and end-to-end tests).
test: install $(CHROMIUM)
	$(BIN)/pytest

## The same suite on the local PostgreSQL server.
test-pg: install $(CHROMIUM)
	IMPROVE_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest

## The fault suite, big: improvements through `improve up` while its parts are killed with -9.
## Improve and its Prefect server on PostgreSQL where it runs (fresh databases each time): the
## Prefect server on SQLite turns events into flow runs too slowly for 200 to settle in time.
FAULTS_N ?= 200
FAULTS_SEED ?= 1
FAULTS_PG ?= postgres@127.0.0.1:5432
FAULTS := $(BIN)/python -m tests.faults.run --improvements $(FAULTS_N) --seed $(FAULTS_SEED)
test-faults: install
	@if pg_isready -h 127.0.0.1 -p 5432 -q; then \
	  for db in improve_faults prefect_faults; do \
	    dropdb -h 127.0.0.1 -U postgres --if-exists $$db && createdb -h 127.0.0.1 -U postgres $$db; \
	  done; \
	  echo "Improve and Prefect on PostgreSQL ($(FAULTS_PG))"; \
	  IMPROVE_TEST_DATABASE_URL=postgresql+psycopg://$(FAULTS_PG)/improve_faults \
	  PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://$(FAULTS_PG)/prefect_faults $(FAULTS); \
	else \
	  echo "PostgreSQL is not reachable: Improve and Prefect on SQLite"; $(FAULTS); \
	fi

## What CI runs: lint, then the suite on SQLite and on PostgreSQL.
test-all: lint test test-pg

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench.decision_latency
	$(BIN)/python -m bench.orchestration_overhead
	$(BIN)/python -m bench.overdue_check
	$(BIN)/python -m bench.service_review
	$(BIN)/python -m bench.outbox

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache .mypy_cache
