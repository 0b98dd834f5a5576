"""Write → audit → publish: a bad build never replaces the published tables."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.e2e.first_night import FIRST_NIGHT_KEY, FirstNight
from trialscreen import pipeline, pseudonym
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # whole pipeline, several runs

SCREENING_DATE = date(2026, 11, 20)
KEY = FIRST_NIGHT_KEY  # the shared first night's
PUBLISHED = ("criterion_evaluations", "screening_results", "eligible_candidates")


def _snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    with Warehouse.connect(warehouse) as wh:
        return {
            t: sorted(wh.query_frame(f"select * from marts.{t}").rows(), key=str) for t in PUBLISHED
        }


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, first_night: FirstNight):
    """The first run, published: a copy of the suite's shared first night
    (tests/e2e/first_night.py, 40 generated patients); the later runs read its drop."""
    assert first_night.screening_date == SCREENING_DATE
    root = tmp_path_factory.mktemp("wap")
    first_night.copy_to(root / "wh.duckdb", root / "reports")
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    # the oracle's count of screened (patient, cohort) pairs: test patients are not screened
    summary = first_night.summary
    screened = sum(n for statuses in summary.candidates.values() for n in statuses.values())
    yield {
        "root": root,
        "drop": first_night.drop,
        "first": first_night.result,
        "before": _snapshot(root / "wh.duckdb"),
        "screened": screened,
    }
    mp.undo()


def _build_candidates(drop: Path, wh_path: Path) -> str:
    """Start a run on the same drop and build it into the candidate schemas (not validated,
    not published); its run_id."""
    run_id = pipeline.start_run(wh_path, SCREENING_DATE, ["axiom"])
    for feed in ("fhir", "hl7", "csv"):
        pipeline.ingest_feed(wh_path, drop, feed, run_id)
    pipeline.prepare_build(wh_path, ["axiom"])
    pipeline.build(wh_path, SCREENING_DATE, run_id)
    return run_id


@pytest.fixture(scope="module")
def candidates(published):
    """One candidate build shared by the tests that corrupt it (one dbt build, not one per
    test): its run_id and a function that puts the built screening_results back, run by each
    test before it changes them. The pristine copy sits outside the candidate schemas, so
    nothing publishes it."""
    root, wh_path = published["root"], published["root"] / "wh.duckdb"
    run_id = _build_candidates(published["drop"], wh_path)
    with Warehouse.connect(wh_path) as wh:
        wh.execute("create schema if not exists wap_test")
        wh.execute(
            "create table wap_test.screening_results as "
            "select * from marts_candidate.screening_results"
        )

    def restore() -> None:
        with Warehouse.connect(wh_path) as wh:
            wh.execute("delete from marts_candidate.screening_results")
            wh.execute(
                "insert into marts_candidate.screening_results "
                "select * from wap_test.screening_results"
            )

    yield {"root": root, "wh_path": wh_path, "run_id": run_id, "restore": restore}
    with Warehouse.connect(wh_path) as wh:
        wh.execute("drop schema wap_test cascade")


def test_first_run_publishes(published) -> None:
    assert published["first"].published, published["first"].message
    assert len(published["before"]["screening_results"]) == published["screened"]
    assert published["screened"] > 0


def test_corrupted_build_fails_validation_and_keeps_yesterdays_tables(
    published, candidates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pseudonym.KEY_ENV, KEY)
    root, wh_path, run_id = candidates["root"], candidates["wh_path"], candidates["run_id"]
    candidates["restore"]()
    # the fixture's corruption: a duplicated key and a creatinine clearance broken for
    # everyone (what a unit or formula bug does), both structural
    with Warehouse.connect(wh_path) as wh:
        wh.execute(
            "insert into marts_candidate.screening_results "
            "select * from marts_candidate.screening_results limit 1"
        )
        wh.execute("update marts_candidate.screening_results set crcl_ml_min = 5000")
    outcome = pipeline.validate(wh_path, root / "reports", run_id, SCREENING_DATE)
    assert not outcome.success
    failed = {(f["expectation"], f["column"]) for f in outcome.blocking_failures}
    assert any(e == "expect_compound_columns_to_be_unique" for e, _ in failed)
    assert ("expect_column_values_to_be_between", "crcl_ml_min") in failed

    # the pipeline does not publish; the run is recorded as failed, with why
    pipeline.finish_run(wh_path, run_id, "failed", message="quality gate failed")
    assert _snapshot(wh_path) == published["before"]
    with Warehouse.connect(wh_path) as wh:
        status, result = wh.query(
            "select status, validation_result from audit.pipeline_runs where run_id = ?",
            [run_id],
        )[0]
    assert status == "failed"
    assert "expect_compound_columns_to_be_unique" in json.dumps(json.loads(result))

    # and the Data Docs page of this run's validation shows the failed expectations
    docs = Path(outcome.data_docs_index).parent / "validations" / "marts" / "screening_results"
    pages = [p.read_text(errors="replace") for p in (docs / run_id).rglob("*.html")]
    assert pages, f"no Data Docs validation page for run {run_id}"
    text = " ".join(pages)
    assert "Values for given compound columns must be unique together" in text
    assert "2 unexpected values found" in text
    assert "crcl_ml_min" in text


def test_one_patients_implausible_value_warns_and_never_blocks_everyone(
    candidates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record's value outside a physiological range is a warning: the gate publishes
    everybody else's results (structural checks such as the column's median still block)."""
    monkeypatch.setenv(pseudonym.KEY_ENV, KEY)
    root, wh_path, run_id = candidates["root"], candidates["wh_path"], candidates["run_id"]
    candidates["restore"]()
    with Warehouse.connect(wh_path) as wh:
        wh.execute(
            "update marts_candidate.screening_results set crcl_ml_min = 5000 "
            "where patient_key = (select min(patient_key) from marts_candidate.screening_results)"
        )
    outcome = pipeline.validate(wh_path, root / "reports", run_id, SCREENING_DATE)
    assert outcome.success, outcome.blocking_failures
    warned = {(w["expectation"], w["column"]) for w in outcome.warnings}
    assert ("expect_column_values_to_be_between", "crcl_ml_min") in warned
    pipeline.finish_run(wh_path, run_id, "failed", message="test stops before publish")


def test_rerun_without_new_files_publishes_the_same_result(
    published, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision: a night with no new files still runs (the screening date moves windows and
    ages); on the same date it reproduces the published result exactly."""
    monkeypatch.setenv(pseudonym.KEY_ENV, KEY)
    root = published["root"]
    again = pipeline.run_pipeline(
        published["drop"], SCREENING_DATE, root / "wh.duckdb", reports_dir=root / "reports"
    )
    assert again.published, again.message
    assert all(c.files_new == 0 for c in again.feed_counts.values())
    after = _snapshot(root / "wh.duckdb")
    for table in ("criterion_evaluations", "screening_results"):
        drop_run = [
            tuple(v for i, v in enumerate(row) if i != 0) for row in after[table]
        ]  # run_id is the first column
        before = [tuple(v for i, v in enumerate(r) if i != 0) for r in published["before"][table]]
        assert sorted(drop_run, key=str) == sorted(before, key=str), table
    with Warehouse.connect(root / "wh.duckdb") as wh:
        new = wh.query_frame("select is_new from marts.eligible_candidates")
    assert new.height > 0 and not new.get_column("is_new").any()  # all seen in the last run


def test_past_date_reproduces_its_result(published, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only records effective on or before the screening date count: a later date changes
    the windows, and going back reproduces the original decisions."""
    monkeypatch.setenv(pseudonym.KEY_ENV, KEY)
    root = published["root"]
    later = pipeline.run_pipeline(
        published["drop"], date(2027, 1, 15), root / "wh.duckdb", reports_dir=root / "reports"
    )
    assert later.published
    with Warehouse.connect(root / "wh.duckdb") as wh:
        unknown_later = wh.scalar(
            "select count(*) from marts.criterion_evaluations where status = 'unknown'"
        )
    back = pipeline.run_pipeline(
        published["drop"], SCREENING_DATE, root / "wh.duckdb", reports_dir=root / "reports"
    )
    assert back.published
    after = _snapshot(root / "wh.duckdb")
    strip = lambda rows: sorted((r[1:] for r in rows), key=str)  # noqa: E731 - drop run_id
    assert strip(after["criterion_evaluations"]) == strip(
        published["before"]["criterion_evaluations"]
    )
    before_unknown = sum(1 for r in published["before"]["criterion_evaluations"] if "unknown" in r)
    assert unknown_later > before_unknown  # labs went stale by mid-January
