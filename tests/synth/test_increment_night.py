"""End to end: the night after a generated drop, its increment is screened as the
increment's oracle says (every criterion of every patient with new results)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from trialscreen import pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.synth import generate
from trialscreen.synth.increment import increment
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # two nights of the whole pipeline

KEY = "increment-test-key"
FIRST = date(2026, 11, 20)


def test_the_next_night_screens_the_increment_as_its_oracle_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pseudonym.KEY_ENV, KEY)
    generate(patients=200, seed=11, out=tmp_path / "night1", screening_date=FIRST)
    summary = increment(tmp_path / "night1", tmp_path / "night2", share=0.2)
    wh = tmp_path / "wh.duckdb"
    first = run_pipeline(tmp_path / "night1", FIRST, wh, reports_dir=tmp_path / "r1")
    assert first.published, first.message
    second = run_pipeline(
        tmp_path / "night2", FIRST + timedelta(days=1), wh, reports_dir=tmp_path / "r2"
    )
    assert second.published, second.message
    expected = pl.read_csv(
        tmp_path / "night2" / "expected" / "criteria.csv", infer_schema=False
    ).with_columns(
        pl.col("mrn").map_elements(lambda m: pseudonym.patient_key(m, KEY), pl.String)
        .alias("patient_key")
    )  # fmt: skip
    assert expected.get_column("mrn").n_unique() == summary["patients"] == 40
    with Warehouse.connect(wh) as conn:
        got = conn.query_frame(
            "select patient_key, cohort_id, criterion_id, status "
            "from marts.criterion_evaluations where trial_id = 'axiom'"
        )
    joined = expected.join(
        got,
        on=["patient_key", "cohort_id", "criterion_id"],
        how="left",
        suffix="_pipeline",
    )
    assert joined.get_column("status_pipeline").null_count() == 0
    wrong = joined.filter(pl.col("status") != pl.col("status_pipeline"))
    assert wrong.height == 0, wrong.select(
        "mrn", "criterion_id", "status", "status_pipeline", "reason"
    ).head(10)
