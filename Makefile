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

.PHONY: install demo test test-fast lint lint-sql lint-types format bench docs clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode, as the image (UV_COMPILE_BYTECODE=1): every process then reads the
# installed packages' bytecode instead of compiling them on import, which a machine with
# PYTHONDONTWRITEBYTECODE=1 (this one) otherwise does in every process, every time: importing
# dbt, GX, Airflow and Cosmos took 16 CPU-s without and 7.5 with it; about 17 s once here.
$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --python $(PYTHON) --extra spark --quiet --compile-bytecode
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

# The inner loop (under two minutes on 2 idle cores): everything but the tests that build
# warehouses (all of tests/dbt and tests/e2e, tests/conftest.py) or need PostgreSQL, Spark or
# a browser; make test runs those too.
test-fast: install
	$(BIN)/pytest -q -n $${PYTEST_WORKERS:-2} -m "not slow and not spark and not postgres and not browser" $${PYTEST_ARGS:-}

# What CI checks before the tests (pre-commit runs the fast ones on each commit). mypy reads
# [tool.mypy] in pyproject.toml, sqlfluff reads .sqlfluff (dbt templater: it compiles the
# models as dbt does, against an in-memory DuckDB). A few minutes, most of it mypy on a cold
# cache and sqlfluff compiling the project: each runs on one core, so the two run side by
# side (their output kept whole per tool, -Otarget); either failing fails lint.
PY_SOURCES := include dags tests scripts
SQLFLUFF := TRIALSCREEN_DUCKDB_PATH=:memory: $(BIN)/sqlfluff
lint: install
	git ls-files -z | xargs -0 $(BIN)/python scripts/hooks/forbidden_files.py
	$(BIN)/python scripts/hooks/doc_links.py
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(MAKE) --no-print-directory -j2 -Otarget lint-sql lint-types

lint-sql: install
	$(SQLFLUFF) lint --disable-progress-bar dbt_project/models

lint-types: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(SQLFLUFF) fix --disable-progress-bar dbt_project/models

bench: install
	$(BIN)/trialscreen bench

# The docs: first the links of the Markdown pages (docs/*.md, README.md) and of the code
# comments that point into them; then the dbt docs site. dbt docs generate reads the warehouse
# catalog, so this builds a small warehouse first: a generated population (trialscreen synth)
# through the nightly run (trialscreen run, which writes the dbt docs site with its reports),
# with a throwaway pseudonym key (synthetic patients only). The reports index links the
# report, the Data Docs (every asset vendored: they render without internet) and the dbt docs
# (overview: dbt_project/models/overview.md). All in out/docs/, rebuilt each time: under two
# minutes of CPU.
DOCS_OUT := out/docs
DOCS_DATE := 2026-01-15
docs: install
	$(BIN)/python scripts/hooks/doc_links.py
	rm -rf $(DOCS_OUT)
	$(BIN)/trialscreen synth --patients 200 --seed 1 --screening-date $(DOCS_DATE) --out $(DOCS_OUT)/feeds
	TRIALSCREEN_PSEUDONYM_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(32))') \
		$(BIN)/trialscreen run --input $(DOCS_OUT)/feeds --screening-date $(DOCS_DATE) \
		--warehouse $(DOCS_OUT)/warehouse.duckdb --reports-dir $(DOCS_OUT)/reports
	@grep -q "Where to look next" $(DOCS_OUT)/reports/dbt_docs/index.html  # the real overview
	$(BIN)/python -c 'import sys; from trialscreen.report import write_index; write_index(sys.argv[1])' $(DOCS_OUT)/reports
	@echo "reports index (links the report, the Data Docs and the dbt docs): $(DOCS_OUT)/reports/index.html"
	@echo "dbt docs site: $(DOCS_OUT)/reports/dbt_docs/index.html"

clean:
	rm -rf .venv .tools demo out .pytest_cache
