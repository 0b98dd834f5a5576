"""Fixtures used across the suite, and how the suite runs in parallel.

The external reference data the tests read is a curated copy inside the repository, in
tests/data/ (see tests/data/README.md).

``make test`` runs on pytest-xdist workers with ``--dist loadfile`` (pyproject addopts): a
test module goes to one worker whole, so the module fixtures that build warehouses are built
once; and the modules are queued heaviest first (``--no-loadscope-reorder`` keeps the order
of collection, set below) so that a long end-to-end build does not start last and become the
tail of the run. (``--dist loadgroup`` with ``xdist_group`` marks would allow groups across
modules, but with pytest 9.2 and xdist 3.8 it silently stops grouping: pytest-xdist issue
1386.) Without ``-n`` nothing changes. Fixtures that start servers or write files keep them
per worker (tests/pg.py; ``tmp_path_factory`` is per worker; ``trialscreen.transform`` gives
every dbt call its own temporary target and log directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
EXTERNAL = TESTS / "data"
sys.path.insert(0, str(TESTS))

# test modules by their cost, slowest first, so that none of them starts last and becomes the
# tail of a parallel run; then the other modules by their heaviest mark (MARK_TIERS), each
# tier in collection order. The cost is what a module builds (measured with -n0 and per-module
# CPU-seconds, docs/benchmarks.md "Test suite"): whole pipeline runs on several populations
# or engines first, then a Spark build, then several dbt builds, then one.
HEAVIEST_FIRST: tuple[str, ...] = (
    # eight nights on DuckDB, the first the shared first night (tests/e2e/first_night.py),
    # which the first module to ask runs for every worker of the run
    "e2e/test_incremental_nights.py",
    "e2e/test_incremental_nights_postgres.py",  # the same eight on PostgreSQL
    "e2e/test_expected_outcomes.py",  # three 700-patient populations through the pipeline
    "spark/test_spark_parity.py",  # a JVM, dbt on Spark (from the shared first night)
    "e2e/test_hardening_runs.py",  # each test runs the pipeline on DuckDB and on PostgreSQL
    "e2e/test_postgres_parity.py",  # the pipeline on DuckDB and on PostgreSQL
    "dbt/test_criteria_scenarios.py",  # dbt builds: DuckDB, a second run, PostgreSQL
    "e2e/test_build_failure.py",  # two nights after the shared one, one failing build
    "e2e/test_cli_exit_codes.py",  # two CLI runs in subprocesses, one blocked by the gate
    "dags/test_trialscreen_nightly.py",  # Airflow dag.test() of the nightly DAG
    "e2e/test_hardening_deployment.py",  # the pipeline under the compose role split
    "e2e/test_phi_hygiene.py",
    "e2e/test_write_audit_publish.py",
    "e2e/test_local_time.py",  # one drop in two time zones
    "e2e/test_synthea_end_to_end.py",
    "synth/test_increment_night.py",  # a generated night, then its increment
    "dbt/test_issue11_scenarios.py",  # the shared scenario build (tests/dbt/conftest.py)
    "dbt/test_patients_merge.py",
    "dbt/test_local_codes_by_facility.py",
    "dbt/test_normalization.py",
)
MARK_TIERS = ({"slow", "spark"}, {"postgres", "browser"})
# on xdist workers both cores are already busy with the two workers' builds: dbt's own
# threads on DuckDB (four by default) then only take turns at Python's lock and cost CPU
# (docs/decisions.md#dbt-threads); the setting changes no result, only how many nodes run at once
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TRIALSCREEN_DBT_THREADS", "1")
# every test in these folders builds a warehouse (dbt, or the whole pipeline): marked slow
SLOW_FOLDERS = {"dbt", "e2e"}


def _module(item: pytest.Item) -> str:
    return item.path.relative_to(TESTS).as_posix()


def _tier(item: pytest.Item) -> int:
    marks = {mark.name for mark in item.iter_markers()}
    return next((n for n, tier in enumerate(MARK_TIERS) if marks & tier), len(MARK_TIERS))


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    # before -m selects: a test that starts the PostgreSQL cluster needs PostgreSQL
    for item in items:
        if "pg_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if item.path.relative_to(TESTS).parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
    yield
    # after selection and pytest's own reordering
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    # the xdist controller queues the modules in the order the workers collected them
    rank = {name: position for position, name in enumerate(HEAVIEST_FIRST)}
    order: dict[str, int] = {}
    for item in items:
        module = _module(item)
        key = rank.get(module, len(rank) + _tier(item))
        order[module] = min(order.get(module, key), key)
    items.sort(key=lambda item: order[_module(item)])  # stable: test order within a module


@pytest.fixture(scope="session")
def external_dir() -> Path:
    if not EXTERNAL.is_dir():
        pytest.fail(f"test data not found at {EXTERNAL}")
    return EXTERNAL


CHROMIUM = Path("/usr/bin/chromium")


def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's temporary root, shared by its xdist workers (theirs are ``popen-gw<n>`` in it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's chromium for the browser tests; installed with apt when absent, by one xdist
    worker at a time (a lock file in the run's temporary root, as ``first_night``): the other
    waits, then finds it. Fails (never skips) when it cannot be installed."""
    from tests.e2e.first_night import exclusive

    with exclusive(_run_root(tmp_path_factory) / "chromium.lock"):
        if not CHROMIUM.exists():
            if os.geteuid() != 0 or not shutil.which("apt-get"):
                pytest.fail("chromium missing and apt-get as root is not available")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
                if done.returncode != 0:
                    pytest.fail(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail("chromium still missing after installation")
    return CHROMIUM


@pytest.fixture(scope="session")
def first_night(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The shared first night (tests/e2e/first_night.py): its drop and project, the night on
    first copy. Shared by the run's workers (their folders are ``popen-gw<n>`` in one root)
    and by the modules of tests/e2e and tests/spark."""
    from tests.e2e.first_night import FirstNight, exclusive, prepare

    base = _run_root(tmp_path_factory)
    root = base / "shared_first_night"
    with exclusive(base / "shared_first_night.lock"):
        if not (root / "prepared").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            prepare(root)
            (root / "prepared").touch()
    return FirstNight(root)


@pytest.fixture(scope="session")
def pg_cluster():
    """A disposable PostgreSQL cluster for the whole session (started from installed binaries)."""
    from pg import start_cluster

    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture()
def pg_database(pg_cluster, request):
    """A fresh database per test on the session cluster; returns its URL."""
    import re

    import psycopg2

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50]
    con = psycopg2.connect(pg_cluster.url)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name}")
    con.close()
    return pg_cluster.url_for(name)


@pytest.fixture(autouse=True)
def _no_trialscreen_settings_leak() -> Iterator[None]:
    """A test's TRIALSCREEN_* settings end with it: ``config.setup()`` (every ``cli.main``
    call, the DAG's import) writes a configuration file's values into ``os.environ``, which
    would otherwise reach the next test on the same worker (a time zone, a folder)."""
    before = {k: v for k, v in os.environ.items() if k.startswith("TRIALSCREEN_")}
    yield
    for key in [k for k in os.environ if k.startswith("TRIALSCREEN_")]:
        if key not in before:
            del os.environ[key]
    os.environ.update(before)
