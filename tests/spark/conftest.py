"""Fixtures of the Spark tests: one generated population screened on DuckDB by the whole
pipeline, and a local Spark session (dbt-spark ``method: session`` reuses it in-process).

Needs the optional ``spark`` extra (``uv sync --extra spark``, which ``make install`` does)
and a Java 17 on PATH; without them the Spark tests fail with the reason (never skip).
Everything Spark writes goes under pytest's temporary directory; the session and its JVM
are stopped at the end of the module, so the rest of the test run does not carry the JVM's
memory.
"""

from __future__ import annotations

import importlib.util
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from trialscreen import pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.synth import generate

KEY = "spark-parity-key"
SCREENING_DATE = date(2026, 11, 20)
PATIENTS, SEED = 60, 5


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
def duckdb_screened(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The population through the whole nightly pipeline on DuckDB (published marts)."""
    root = tmp_path_factory.mktemp("spark_parity")
    summary = generate(
        patients=PATIENTS, seed=SEED, out=root / "drop", screening_date=SCREENING_DATE
    )
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    try:
        result = run_pipeline(
            root / "drop", SCREENING_DATE, root / "wh.duckdb", reports_dir=root / "reports"
        )
    finally:
        mp.undo()
    assert result.published, result.message
    return {
        "root": root,
        "warehouse": root / "wh.duckdb",
        "run_id": result.run_id,
        "screening_date": SCREENING_DATE,
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
