"""Fixtures of the Spark tests: a generated population screened on DuckDB by the whole
pipeline (the suite's shared first night), and a local Spark session (dbt-spark ``method:
session`` reuses it in-process).

Needs the optional ``spark`` extra (``uv sync --extra spark``, which ``make install`` does)
and a Java 17 on PATH; without them the Spark tests fail with the reason (never skip).
Everything Spark writes goes under pytest's temporary directory; the session and its JVM
are stopped at the end of the module, so the rest of the test run does not carry the JVM's
memory.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest


def _spark_missing() -> str | None:
    if (
        importlib.util.find_spec("pyspark") is None
        or importlib.util.find_spec("dbt.adapters.spark") is None
    ):
        return "the optional 'spark' extra is not installed (uv sync --extra spark)"
    if shutil.which("java") is None:
        return "no java on PATH (pyspark needs Java 17)"
    return None


@pytest.fixture(scope="module")
def duckdb_screened(first_night: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A population through the whole nightly pipeline on DuckDB (published marts): the
    suite's shared first night (tests/e2e/first_night.py), copied."""
    root = tmp_path_factory.mktemp("spark_parity")
    summary = first_night.summary
    return {
        "root": root,
        "warehouse": first_night.copy_to(root / "wh.duckdb"),
        "run_id": first_night.run_id,
        "screening_date": first_night.screening_date,
        # the oracle's screened patients (every screened patient is in every cohort; test
        # patients and merged-away MRNs have keys but are not screened)
        "screened": sum(next(iter(summary.candidates.values())).values()),
    }


@pytest.fixture(scope="module")
def spark(duckdb_screened: dict[str, Any]):
    """A local session over a warehouse directory in the test's temporary directory."""
    reason = _spark_missing()
    if reason:  # `make install` installs the extra: a missing one is a broken setup, not a skip
        pytest.fail(reason)
    from trialscreen.spark import spark_session, stop_session

    warehouse_dir: Path = duckdb_screened["root"] / "spark-warehouse"
    # in-memory catalog: loading and dbt share this process, no Derby metastore needed
    session = spark_session(
        warehouse_dir, catalog="in-memory", driver_memory="512m", small_data=True
    )
    try:
        yield {"session": session, "warehouse_dir": warehouse_dir}
    finally:
        stop_session(session)
