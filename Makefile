# The verbs a newcomer needs. Everything installs from the lock (uv.lock) into .venv.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: install demo test test-fast lint format bench docs clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --python $(PYTHON) --extra spark --quiet
	touch $@

MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project/models dbt_project/macros dbt_project/seeds -type f 2>/dev/null) dbt_project/dbt_project.yml

# Cosmos renders the DAG's dbt tasks from this precompiled manifest (no dbt call at parse).
$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	$(BIN)/trialscreen manifest

install: $(VENV)/.installed $(MANIFEST)

demo: install
	$(BIN)/trialscreen demo --patients $${PATIENTS:-1000} --out demo

# The whole suite, nothing skipped, on PYTEST_WORKERS (2) xdist workers, one module per worker
# at a time (pyproject addopts); PYTEST_ARGS adds options (-x, -k ...; -n 0 runs it serially).
test: install
	$(BIN)/pytest -q -n $${PYTEST_WORKERS:-2} $${PYTEST_ARGS:-}

# The inner loop (about a minute on 2 cores): everything but the tests that build whole
# warehouses or need PostgreSQL, Spark or a browser; make test runs those too.
test-fast: install
	$(BIN)/pytest -q -n $${PYTEST_WORKERS:-2} -m "not slow and not spark and not postgres and not browser" $${PYTEST_ARGS:-}

lint: install
	$(BIN)/ruff check include dags tests
	$(BIN)/ruff format --check include dags tests

format: install
	$(BIN)/ruff format include dags tests
	$(BIN)/ruff check --fix include dags tests

bench: install
	$(BIN)/trialscreen bench

clean:
	rm -rf .venv .tools demo out .pytest_cache
