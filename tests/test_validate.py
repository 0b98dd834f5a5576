"""The quality gate (trialscreen.validate) on small hand-written warehouses.

GX is slow to import and run, so each warehouse is validated once per module (module-scoped
fixtures) and the tests assert on the outcomes and the Data Docs they left behind.
The builders here are reused by tests/test_report.py.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from trialscreen import ingest
from trialscreen.pipeline import RUNS_COLUMNS, RUNS_TABLE
from trialscreen.validate import ValidationOutcome
from trialscreen.warehouse import Warehouse

SCREENING_DATE = date(2026, 11, 2)
TRIAL = "axiom"
COHORTS = ("asps", "safety_run_in")
CRITERIA = ("age", "anc", "renal", "informed_consent")
# PHI that must never leave the raw tables
PHI_MRN = "MRN-99887766"
PHI_FAMILY = "Zyxwvutsson"
PHI_GIVEN = "Quorabelle"
PHI_BIRTH = date(1961, 7, 4)
PHI_FILE = f"fhir/{PHI_FAMILY}_{PHI_GIVEN}_0001.json"
STATUS_MARKUP = f"<script>alert('{PHI_GIVEN}')</script>"

# patient -> (criterion -> status); everything not listed is met, informed_consent is review
PATIENTS: dict[str, dict[str, str]] = {
    "a1b2c3d4e5f60001": {},
    "a1b2c3d4e5f60002": {"anc": "unknown"},
    "a1b2c3d4e5f60003": {"anc": "not_met"},
    "a1b2c3d4e5f60004": {"age": "not_met"},
    "a1b2c3d4e5f60005": {},
    "a1b2c3d4e5f60006": {"renal": "unknown"},
}


def _status(patient: str, criterion: str) -> str:
    if criterion == "informed_consent":
        return "review"
    return PATIENTS[patient].get(criterion, "met")


def marts_frames(run_id: str, patients: list[str] | None = None) -> dict[str, pl.DataFrame]:
    """criterion_evaluations, screening_results, eligible_candidates, screening_funnel."""
    keys = patients or list(PATIENTS)
    evals = []
    for cohort in COHORTS:
        for key in keys:
            for criterion in CRITERIA:
                status = _status(key, criterion)
                evals.append(
                    {
                        "run_id": run_id,
                        "screening_date": SCREENING_DATE,
                        "trial_id": TRIAL,
                        "cohort_id": cohort,
                        "patient_key": key,
                        "criterion_id": criterion,
                        "status": status,
                        "value_numeric": 0.8 if status == "not_met" else None,
                        "value_unit": None,
                        "threshold": None,
                        "uln": None,
                        "uln_source": None,
                        "evidence_source": "fhir" if status in ("met", "not_met") else None,
                        "evidence_id": f"obs-{key[-2:]}-{criterion}"
                        if status != "review"
                        else None,
                        "evidence_at": datetime(2026, 11, 1, 8, 0),
                        "reason": f"{criterion}: {status}",
                    }
                )
    ce = pl.DataFrame(evals)
    results = []
    for (cohort, key), group in ce.group_by(["cohort_id", "patient_key"], maintain_order=True):
        statuses = group.get_column("status").to_list()
        n = {s: statuses.count(s) for s in ("met", "not_met", "unknown", "review")}
        candidate = (
            "ineligible" if n["not_met"] else "missing_data" if n["unknown"] else "ready_for_review"
        )
        crits = group.get_column("criterion_id").to_list()
        results.append(
            {
                "run_id": run_id,
                "screening_date": SCREENING_DATE,
                "trial_id": TRIAL,
                "cohort_id": cohort,
                "patient_key": key,
                "candidate_status": candidate,
                "n_met": n["met"],
                "n_not_met": n["not_met"],
                "n_unknown": n["unknown"],
                "n_review": n["review"],
                "unknown_criteria": ",".join(
                    c for c, s in zip(crits, statuses, strict=True) if s == "unknown"
                ),
                "review_criteria": "informed_consent",
                "not_met_criteria": ",".join(
                    c for c, s in zip(crits, statuses, strict=True) if s == "not_met"
                ),
                "age_years": 11.0 if PATIENTS[key].get("age") else 44.0,
                "ecog": 1.0,
                "karnofsky": None,
                "ecog_equivalent": None,
                "karnofsky_equivalent": 80.0,
                "anc": 0.8 if PATIENTS[key].get("anc") == "not_met" else 2.1,
                "platelets": 210.0,
                "hemoglobin": 12.5,
                "bilirubin_x_uln": 0.6,
                "ast_x_uln": 0.9,
                "alt_x_uln": 1.1,
                "creatinine_x_uln": 0.8,
                "crcl_ml_min": 92.0,
                "crcl_ml_min_1_73m2": 88.5,
                "albumin": 4.0,
                "sodium": 139.0,
            }
        )
    sr = pl.DataFrame(results)
    ec = sr.filter(pl.col("candidate_status").is_in(["ready_for_review", "missing_data"]))
    ec = ec.with_columns(
        pl.lit(date(2026, 10, 26)).alias("first_eligible_on"),
        (pl.col("patient_key") != "a1b2c3d4e5f60001").alias("is_new"),
    )
    funnel = []
    for cohort in COHORTS:
        remaining = set(keys)
        for ordinal, criterion in enumerate(CRITERIA, start=1):
            statuses = {k: _status(k, criterion) for k in keys}
            removed = {k for k in remaining if statuses[k] == "not_met"}
            remaining -= removed
            funnel.append(
                {
                    "run_id": run_id,
                    "screening_date": SCREENING_DATE,
                    "trial_id": TRIAL,
                    "cohort_id": cohort,
                    "ordinal": ordinal,
                    "criterion_id": criterion,
                    "patients_screened": len(keys),
                    "n_met": sum(s == "met" for s in statuses.values()),
                    "n_not_met": sum(s == "not_met" for s in statuses.values()),
                    "n_unknown": sum(s == "unknown" for s in statuses.values()),
                    "n_review": sum(s == "review" for s in statuses.values()),
                    "patients_removed": len(removed),
                    "patients_remaining": len(remaining),
                }
            )
    return {
        "criterion_evaluations": ce,
        "screening_results": sr,
        "eligible_candidates": ec,
        "screening_funnel": pl.DataFrame(funnel),
    }


def history_frame(run_id: str, screening_date: date, results: pl.DataFrame) -> pl.DataFrame:
    return results.select(
        pl.lit(run_id).alias("run_id"),
        pl.lit(screening_date).alias("screening_date"),
        "trial_id",
        "cohort_id",
        "patient_key",
        "candidate_status",
        pl.col("candidate_status")
        .is_in(["ready_for_review", "missing_data"])
        .alias("is_candidate"),
        pl.lit(datetime(2026, 11, 2, 3, 0)).alias("recorded_at"),
    )


_NUMERIC = {"value_numeric", "threshold", "uln", "karnofsky", "ecog_equivalent"}


def write_marts(wh: Warehouse, schema: str, frames: dict[str, pl.DataFrame]) -> None:
    for name, frame in frames.items():
        frame = frame.with_columns(
            pl.col(c).cast(pl.Float64 if c in _NUMERIC else pl.String)
            for c, t in frame.schema.items()
            if t == pl.Null
        )
        wh.replace_table(f"{schema}.{name}", frame)


def _raw_rows(wh: Warehouse, run_id: str) -> None:
    """A few landed rows per feed, with PHI in the raw PHI columns and in identifiers."""
    now = datetime(2026, 11, 2, 2, 0)
    lineage = {"source_position": 1, "record_hash": "h", "run_id": run_id, "loaded_at": now}
    wh.load_frame(
        "raw.fhir_patients",
        pl.DataFrame(
            [
                {
                    **lineage,
                    "source_file": PHI_FILE,
                    "record_id": "pat-1",
                    "patient_ref": "pat-1",
                    "mrn": PHI_MRN,
                    "family_name": PHI_FAMILY,
                    "given_name": PHI_GIVEN,
                    "birth_date": PHI_BIRTH,
                    "sex": "female",
                }
            ]
        ),
    )
    obs = [
        {
            **lineage,
            "source_file": PHI_FILE,
            "record_id": f"obs-{i}",
            "patient_ref": "pat-1",
            "loinc": "751-8",
            "value_numeric": 2.1,
            "value_unit": "10*9/L",
            # a sender's status outside the vocabulary: markup and a name (OBX-11 and FHIR
            # status are free to a careless sender); Data Docs must show '(unlisted)' only
            "status": STATUS_MARKUP if i == 2 else "final",
            "effective_at": datetime(2026, 11, 1, 8, 0),
        }
        for i in range(3)
    ]
    wh.load_frame("raw.fhir_observations", pl.DataFrame(obs))
    # HL7: patient_ref is the MRN itself; the feed is stale (latest result 40 days old)
    wh.load_frame(
        "raw.hl7_observations",
        pl.DataFrame(
            [
                {
                    **lineage,
                    "source_file": "hl7/batch.hl7",
                    "record_id": "MSG1|1|2160-0",
                    "patient_ref": PHI_MRN,
                    "mrn": PHI_MRN,
                    "loinc": "2160-0",
                    "value_numeric": 0.9,
                    "value_unit": "mg/dL",
                    "status": "final",
                    "effective_at": datetime(2026, 9, 23, 7, 0),
                }
            ]
        ),
    )


def _audit_rows(wh: Warehouse, run_ids: list[str]) -> None:
    rows = []
    for i, run_id in enumerate(run_ids):
        for feed, records in (("fhir", 40 + 10 * i), ("hl7", 12 + i), ("csv", 0)):
            quarantined = 2 if feed == "fhir" else 0
            rows.append(
                {
                    "run_id": run_id,
                    "feed": feed,
                    "files_seen": 3,
                    "files_new": 2,
                    "files_skipped": 1,
                    "files_quarantined": 0,
                    "records_in": records,
                    "loaded": records - quarantined - 1 if records else 0,
                    "duplicates_skipped": 1 if records else 0,
                    "quarantined": quarantined,
                    "ignored": 0,
                    "latest_record_at": datetime(2026, 10, 25 + i, 8, 0) if feed != "csv" else None,
                    "finished_at": datetime(2026, 10, 30, 2, 0) + timedelta(days=i),
                }
            )
    wh.load_frame(ingest.FEED_COUNTS_TABLE, pl.DataFrame(rows, schema=ingest.FEED_COUNT_COLUMNS))
    quarantine = [
        {
            "run_id": run_ids[-1],
            "feed": "fhir",
            "scope": "record",
            "source_file": PHI_FILE,
            "source_position": 7,
            "error": "Observation without a subject reference",
            "raw_payload": f'{{"identifier": "{PHI_MRN}", "name": "{PHI_FAMILY}"}}',
            "quarantined_at": datetime(2026, 11, 2, 2, 0),
        },
        {
            "run_id": run_ids[-1],
            "feed": "fhir",
            "scope": "record",
            "source_file": PHI_FILE,
            "source_position": 9,
            "error": "Observation without a subject reference",
            "raw_payload": f'{{"birthDate": "{PHI_BIRTH.isoformat()}"}}',
            "quarantined_at": datetime(2026, 11, 2, 2, 0),
        },
    ]
    wh.load_frame(
        ingest.QUARANTINE_TABLE,
        pl.DataFrame(quarantine, schema=ingest.QUARANTINE_TABLE_COLUMNS),
    )
    runs = []
    for i, run_id in enumerate(run_ids):
        runs.append(
            {
                "run_id": run_id,
                "screening_date": SCREENING_DATE - timedelta(days=len(run_ids) - 1 - i),
                "trial_ids": TRIAL,
                "trial_definition_hash": "abc",
                "code_version": "0.1.0",
                "warehouse": "duckdb:///x",
                "started_at": datetime(2026, 10, 30, 1, 0) + timedelta(days=i),
                "finished_at": datetime(2026, 10, 30, 2, 0) + timedelta(days=i),
                "status": "published" if i < len(run_ids) - 1 else "running",
                "feed_counts": None,
                "validation_result": None,
                "message": None,
            }
        )
    wh.ensure_table(RUNS_TABLE, RUNS_COLUMNS)
    wh.load_frame(RUNS_TABLE, pl.DataFrame(runs, schema=RUNS_COLUMNS))


def _int_observations(wh: Warehouse) -> None:
    wh.replace_table(
        "intermediate.int_observations",
        pl.DataFrame(
            {
                "patient_mrn": [PHI_MRN] * 5,
                "analyte": ["hemoglobin", "hemoglobin", "sodium", "anc", "creatinine"],
                "unit_raw": ["g/dL", "g/dL", "mmol/L", "furlongs", "mg/dL"],
                "value_issue": ["implausible", None, "implausible", "unmapped_unit", None],
            }
        ),
    )


PREVIOUS_RUNS = ["run-2026-10-30", "run-2026-10-31"]


def build_clean(path: Path, run_id: str) -> str:
    """A consistent warehouse: raw (fhir, hl7; no csv tables at all), audit, marts."""
    url = f"duckdb:///{path}"
    with Warehouse.connect(url) as wh:
        ingest.ensure_tables(wh)
        for entity in ("patients", "observations", "conditions", "medications"):
            wh.execute(f"drop table raw.csv_{entity}")  # a feed never delivered: no tables
        _raw_rows(wh, run_id)
        _audit_rows(wh, [*PREVIOUS_RUNS, run_id])
        frames = marts_frames(run_id)
        write_marts(wh, "marts", frames)
        history = pl.concat(
            [
                history_frame(PREVIOUS_RUNS[-1], date(2026, 10, 31), frames["screening_results"]),
                history_frame(run_id, SCREENING_DATE, frames["screening_results"]),
            ]
        )
        wh.replace_table("marts.screening_candidate_history", history)
        _int_observations(wh)
    return url


def build_broken(path: Path, run_id: str) -> str:
    """Marts with a duplicate screening_results key and an impossible CrCl."""
    url = f"duckdb:///{path}"
    frames = marts_frames(run_id)
    sr = frames["screening_results"].with_columns(
        pl.when(pl.col("patient_key") == "a1b2c3d4e5f60002")
        .then(5000.0)
        .otherwise(pl.col("crcl_ml_min"))
        .alias("crcl_ml_min")
    )
    frames["screening_results"] = pl.concat([sr, sr.head(1)])
    with Warehouse.connect(url) as wh:
        write_marts(wh, "marts", frames)
    return url


def build_collapsed(path: Path, run_id: str) -> str:
    """Published marts from the previous run (12 rows); candidate marts with 4 rows."""
    url = f"duckdb:///{path}"
    with Warehouse.connect(url) as wh:
        write_marts(wh, "marts", marts_frames(PREVIOUS_RUNS[-1]))
        write_marts(
            wh, "marts_candidate", marts_frames(run_id, ["a1b2c3d4e5f60001", "a1b2c3d4e5f60002"])
        )
    return url


# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def clean(tmp_path_factory, reports_dir):
    from trialscreen.validate import validate

    url = build_clean(tmp_path_factory.mktemp("clean") / "wh.duckdb", "run-clean")
    return validate(url, reports_dir, "run-clean", SCREENING_DATE)


@pytest.fixture(scope="module")
def broken(tmp_path_factory, reports_dir):
    from trialscreen.validate import validate

    url = build_broken(tmp_path_factory.mktemp("broken") / "wh.duckdb", "run-broken")
    return validate(url, reports_dir, "run-broken", SCREENING_DATE, suites=["marts"])


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory, reports_dir):
    from trialscreen.validate import validate

    url = build_collapsed(tmp_path_factory.mktemp("collapsed") / "wh.duckdb", "run-collapse")
    return validate(
        url,
        reports_dir,
        "run-collapse",
        SCREENING_DATE,
        schema_map={"marts": "marts_candidate"},
        suites=["marts"],
    )


def _named(entries: list[dict], asset: str, expectation: str) -> list[dict]:
    return [e for e in entries if e["asset"] == asset and e["expectation"] == expectation]


def test_clean_warehouse_passes_with_stale_feed_as_warning(clean):
    assert clean.success, clean.blocking_failures
    assert clean.blocking_failures == []
    stale = _named(clean.warnings, "check.hl7_freshness", "expect_column_values_to_be_between")
    assert stale and stale[0]["column"] == "days_since_latest_observation"
    assert clean.expectations_evaluated > 50


def test_missing_feed_tables_validate_as_empty_frames(clean):
    csv = [a for a in clean.assets if a["name"] == "raw.csv_observations"]
    assert csv and csv[0]["note"] == "table not found" and csv[0]["success"]


def test_quarantine_share_below_threshold_is_not_a_warning(clean):
    # 2 of 60 fhir records quarantined = 3.3% (< 5%): no warning; hl7 none
    assert not _named(
        clean.warnings, "check.fhir_quarantine_share", "expect_column_values_to_be_between"
    )


def test_duplicate_screening_key_is_a_blocking_failure(broken):
    assert not broken.success
    dup = _named(
        broken.blocking_failures, "marts.screening_results", "expect_compound_columns_to_be_unique"
    )
    assert dup, broken.blocking_failures
    assert dup[0]["column"] == "trial_id,cohort_id,patient_key"
    assert dup[0]["suite"] == "marts"


def test_one_impossible_creatinine_clearance_warns_and_does_not_block(broken):
    # one patient's CrCl of 5000 is that record's problem (a warning naming the value); the
    # same range failed by most of the column blocks (tests/e2e/test_write_audit_publish.py)
    def crcl(failures):
        return [
            f
            for f in _named(
                failures, "marts.screening_results", "expect_column_values_to_be_between"
            )
            if f["column"] == "crcl_ml_min"
        ]

    warned = crcl(broken.warnings)
    assert warned and "5000" in warned[0]["observed"], broken.warnings
    assert not crcl(broken.blocking_failures)


def test_row_count_collapse_against_published_run_blocks(collapsed):
    assert not collapsed.success
    names = {(f["asset"], f["column"]) for f in collapsed.blocking_failures}
    assert ("check.row_counts_vs_published", "results_collapsed") in names
    assert ("check.row_counts_vs_published", "evaluations_collapsed") in names
    # the candidate tables themselves are consistent: nothing else blocks
    assert names <= {
        ("check.row_counts_vs_published", "results_collapsed"),
        ("check.row_counts_vs_published", "evaluations_collapsed"),
    }, names


def test_outcome_round_trips_through_json(broken):
    again = ValidationOutcome.from_json(broken.as_json())
    assert again.success is False
    assert again.blocking_failures == broken.blocking_failures
    assert "FAILED" in again.summary()


def test_data_docs_show_the_failed_expectation(clean, broken, collapsed, reports_dir):
    index = broken.data_docs_index
    assert index is not None and index.is_file()
    assert index == clean.data_docs_index  # one site, runs accumulate
    pages = list(index.parent.glob("validations/marts/screening_results/run-broken/*/*.html"))
    assert pages, "no validation page for the failing run"
    html = pages[0].read_text()
    assert "expect_compound_columns_to_be_unique" in html or "unique" in html.lower()
    assert "crcl_ml_min" in html
    page = [a for a in broken.assets if a["name"] == "marts.screening_results"][0]["docs_page"]
    assert page and (index.parent / page).is_file()
    index_html = index.read_text()
    for run in ("run-clean", "run-broken", "run-collapse"):
        assert run in index_html


def test_data_docs_built_once_per_gate_still_page_and_index_every_validation(
    clean, broken, collapsed
):
    """docs/decisions.md#gate-cpu: the pages and the index are built once after a gate's
    checkpoints, not by each checkpoint; every asset of every gate keeps its own page, the
    index links it, and every page of the site is localized, though the later gates
    rewrite only the pages they built (test_report_offline_docs.py checks the rewrite)."""
    index = clean.data_docs_index
    assert index is not None
    index_html = index.read_text()
    for outcome in (clean, broken, collapsed):
        pages = {a["name"]: a["docs_page"] for a in outcome.assets}
        assert len(pages) == len(outcome.assets) and all(pages.values()), pages
        for name, page in pages.items():
            assert page.startswith(f"validations/{name.replace('.', '/')}/{outcome.run_id}/")
            assert (index.parent / page).is_file()
            assert page in index_html, f"the index does not link {page}"
    external = re.compile(r"""(?:src|href)=["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I)
    site_pages = sorted(index.parent.rglob("*.html"))
    assert len(site_pages) > len(clean.assets) + len(broken.assets) + len(collapsed.assets)
    assert [p.name for p in site_pages if external.search(p.read_text())] == []


def test_no_phi_in_data_docs(clean, broken, collapsed, reports_dir):
    docs = reports_dir / "data_docs"
    files = [p for p in docs.rglob("*") if p.is_file() and p.suffix in (".html", ".json", ".yml")]
    assert files
    for path in files:
        text = path.read_text(errors="replace")
        for secret in (PHI_MRN, PHI_FAMILY, PHI_GIVEN, PHI_BIRTH.isoformat(), "Quorabelle"):
            assert secret not in text, f"{secret!r} found in {path.relative_to(docs)}"


def test_unexpected_raw_values_reach_data_docs_only_as_a_category(clean, reports_dir):
    """docs/decisions.md "Free text from source records": a raw status outside the
    vocabulary is validated as '(unlisted)' — counted and shown, never rendered as sent."""
    [status] = _named(clean.warnings, "raw.fhir_observations", "expect_column_values_to_be_in_set")
    assert status["observed"].startswith("1 of 3 rows unexpected")
    site = reports_dir / "data_docs" / "gx" / "uncommitted" / "data_docs" / "local_site"
    pages = list((site / "validations" / "raw" / "fhir_observations").rglob("*.html"))
    assert pages
    text = "".join(p.read_text(errors="replace") for p in pages)
    assert "(unlisted)" in text
    for path in (reports_dir / "data_docs").rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json"):
            body = path.read_text(errors="replace")
            assert "alert(" not in body and "<script>alert" not in body, path


def test_raw_text_columns_must_be_masked_or_categorized(tmp_path):
    from trialscreen.validate import SuiteError, load_suite

    asset = (
        "suite: raw_text\nassets:\n  - name: raw.x\n    table: raw.x\n"
        "    columns: {run_id: string, status: string, value_numeric: float}\n"
    )
    (tmp_path / "raw_text.yml").write_text(asset + "    expectations: []\n")
    with pytest.raises(SuiteError, match=r"\['status'\].*'masked' or 'categorized'"):
        load_suite("raw_text", "r1", SCREENING_DATE, directory=tmp_path)
    (tmp_path / "raw_text.yml").write_text(
        asset + "    categorized: {status: [final]}\n    expectations: []\n"
    )
    suite = load_suite("raw_text", "r1", SCREENING_DATE, directory=tmp_path)
    assert suite.assets[0].categorized == {"status": ("final",)}


def test_suite_files_are_rejected_with_the_field_named(tmp_path):
    from trialscreen.validate import SuiteError, load_suite

    (tmp_path / "bad.yml").write_text(
        "suite: bad\nassets:\n  - name: raw.x\n    table: raw.x\n"
        "    columns: {mrn: string}\n    expectations: []\n"
    )
    with pytest.raises(SuiteError, match=r"columns\.mrn"):
        load_suite("bad", "r1", SCREENING_DATE, directory=tmp_path)
    with pytest.raises(ValueError, match="run_id"):
        load_suite("bad", "r1'; drop table x", SCREENING_DATE, directory=tmp_path)


def test_schema_map_reads_candidate_schema_but_keeps_names():
    from trialscreen.validate import load_suite

    suite = load_suite("marts", "r1", SCREENING_DATE, schema_map={"marts": "marts_candidate"})
    by_name = {a.name: a for a in suite.assets}
    assert by_name["marts.screening_results"].table == "marts_candidate.screening_results"
    published = by_name["check.row_counts_vs_published"]
    assert "marts.screening_results" in published.requires
    assert "marts_candidate.screening_results" in published.requires


def _probe_warehouse(tmp_path: Path, monkeypatch, suite: str, values: str) -> str:
    """A suite file ``probe`` and a DuckDB warehouse with ``marts.probe(n, label)`` holding
    ``values``; the warehouse's URL."""
    from trialscreen.validate import EXPECTATIONS_DIR_ENV

    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "probe.yml").write_text(suite)
    monkeypatch.setenv(EXPECTATIONS_DIR_ENV, str(tmp_path / "suites"))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with Warehouse.connect(url) as wh:
        wh.execute("create schema marts")
        wh.execute(f"create table marts.probe as select * from (values {values}) t(n, label)")
    return url


PROBE_SUITE = """\
suite: probe
description: one expectation errors; the others are evaluated on their data
assets:
  - name: marts.probe
    table: marts.probe
    columns: {n: int, label: string, dropped: int}
    expectations:
      - {type: expect_column_values_to_not_be_null, kwargs: {column: n}, blocking: true}
      - type: expect_column_values_to_be_between  # text against numbers: DuckDB raises
        kwargs: {column: label, min_value: 0, max_value: 10}
        blocking: true
      - type: expect_column_values_to_be_between  # listed, not in the table
        kwargs: {column: dropped, min_value: 0, max_value: 10}
        blocking: true
      - {type: expect_column_values_to_be_between, kwargs: {column: n, min_value: 0,
         max_value: 10}, blocking: true}
      - {type: expect_column_values_to_be_between, kwargs: {column: n, min_value: 0,
         max_value: 2}, blocking: true}
      - {type: expect_column_max_to_be_between, kwargs: {column: n, min_value: 0,
         max_value: 10}, blocking: false}
  - name: marts.probe_next
    table: marts.probe
    columns: {n: int}
    expectations:
      - {type: expect_table_row_count_to_equal, kwargs: {value: 2}, blocking: true}
      - {type: expect_column_min_to_be_between, kwargs: {column: n, min_value: 2},
         blocking: false}
"""


def test_an_erroring_expectation_leaves_the_others_evaluated(tmp_path, monkeypatch):
    """DuckDB aborts the gate connection's transaction when a metric query fails; every later
    expectation used to fail with it ("Current transaction is aborted"), listing checks that
    never ran as failed. Now the failed query is rolled back: the erroring expectations are
    reported as errors and every other one passes or fails as its data says, in this asset
    and in the next one."""
    from trialscreen.validate import validate

    url = _probe_warehouse(tmp_path, monkeypatch, PROBE_SUITE, "(1, 'one'), (5, 'five')")
    outcome = validate(url, tmp_path / "reports", "run-probe", SCREENING_DATE, suites=["probe"])

    assert outcome.expectations_evaluated == 8
    failed = {
        (f["asset"], f["column"], f["observed"].startswith("error:"))
        for f in outcome.blocking_failures
    }
    assert failed == {
        ("marts.probe", "label", True),
        ("marts.probe", "dropped", True),
        ("marts.probe", "n", False),  # the 0..2 range: 5 is outside
    }
    (on_data,) = [f for f in outcome.blocking_failures if f["column"] == "n"]
    assert on_data["observed"] == "1 of 2 rows unexpected (e.g. 5)"
    assert [(w["asset"], w["expectation"], w["observed"]) for w in outcome.warnings] == [
        ("marts.probe_next", "expect_column_min_to_be_between", "1")
    ]
    assert not outcome.success


def test_a_gate_that_raises_still_builds_the_pages_of_the_assets_that_ran(tmp_path, monkeypatch):
    """docs/decisions.md#gate-cpu: Data Docs are built once, after the checkpoints; when an
    asset's run raises (here GX refuses an expectation's arguments: ``mostly`` above 1), the
    error propagates and the asset validated before it still has its page in the index,
    localized (a later gate rewrites only its own pages)."""
    from trialscreen.validate import EXPECTATIONS_DIR_ENV, validate

    suite = PROBE_SUITE.split("  - name: marts.probe_next")[1]
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "probe.yml").write_text(
        "suite: probe\nassets:\n  - name: marts.probe_next"
        + suite
        + "  - name: marts.probe_bad\n    table: marts.probe\n    columns: {n: int}\n"
        "    expectations:\n"
        "      - {type: expect_column_values_to_not_be_null, kwargs: {column: n, mostly: 5},"
        " blocking: true}\n"
    )
    monkeypatch.setenv(EXPECTATIONS_DIR_ENV, str(tmp_path / "suites"))
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with Warehouse.connect(url) as wh:
        wh.execute("create schema marts")
        wh.execute("create table marts.probe as select * from (values (1), (5)) t(n)")
    with pytest.raises(Exception, match="mostly"):
        validate(url, tmp_path / "reports", "run-raise", SCREENING_DATE, suites=["probe"])

    site = tmp_path / "reports" / "data_docs" / "gx" / "uncommitted" / "data_docs" / "local_site"
    pages = sorted((site / "validations" / "marts" / "probe_next" / "run-raise").glob("*/*.html"))
    assert len(pages) == 1
    assert pages[0].relative_to(site).as_posix() in (site / "index.html").read_text()
    assert not (site / "validations" / "marts" / "probe_bad").exists()
    assert "static/vendor/bootstrap-4.3.1/bootstrap.min.css" in pages[0].read_text()
    assert "https://" not in pages[0].read_text()


def test_a_suite_page_is_rendered_again_only_when_its_suite_changed(tmp_path, monkeypatch):
    """docs/decisions.md#gate-cpu: a gate stores an asset's GX suite, and renders its page,
    when the suite file changed it (or the page is missing); every night's validation
    result gets its page. Here a second night with the same suites leaves both suite
    pages as they were; a third, with one expectation's bounds changed, renders that
    asset's page with the new bounds and its result against them, and leaves the other."""
    from trialscreen.validate import validate

    suite = PROBE_SUITE.split("  - name: marts.probe_next")[1]
    text = "suite: probe\nassets:\n  - name: marts.probe_next" + suite
    url = _probe_warehouse(tmp_path, monkeypatch, text, "(1, 'one'), (5, 'five')")
    text += "  - name: marts.probe_other\n    table: marts.probe\n    columns: {n: int}\n"
    text += "    expectations:\n      - {type: expect_table_row_count_to_equal, kwargs: {value: 2},"
    text += " blocking: true}\n"
    (tmp_path / "suites" / "probe.yml").write_text(text)
    site = tmp_path / "reports" / "data_docs" / "gx" / "uncommitted" / "data_docs" / "local_site"
    changed, other = (
        site / "expectations" / "marts" / f"{n}.html" for n in ("probe_next", "probe_other")
    )

    def night(run_id: str) -> tuple[ValidationOutcome, int, int]:
        outcome = validate(url, tmp_path / "reports", run_id, SCREENING_DATE, suites=["probe"])
        return outcome, changed.stat().st_mtime_ns, other.stat().st_mtime_ns

    first, *first_times = night("run-1")
    assert first.warnings and first.warnings[0]["observed"] == "1"
    second, *second_times = night("run-2")
    assert second_times == first_times
    before = changed.read_text()
    (tmp_path / "suites" / "probe.yml").write_text(text.replace("min_value: 2}", "min_value: 1}"))
    third, changed_at, other_at = night("run-3")
    assert third.warnings == []  # the minimum, 1, is now within bounds
    assert changed_at != first_times[0] and other_at == first_times[1]
    assert changed.read_text() != before
    for outcome in (first, second, third):
        for asset in outcome.assets:
            assert (site / asset["docs_page"]).is_file(), asset


_GATE_THEN_EXIT = """
import sys
from datetime import date
from pathlib import Path

from trialscreen.validate import validate
from trialscreen.warehouse import Warehouse

root = Path(sys.argv[1])
url = f"duckdb:///{root / 'wh.duckdb'}"
with Warehouse.connect(url) as wh:
    wh.execute("create schema marts")
    wh.execute("create table marts.probe as select * from (values (1), (5)) t(n)")
outcome = validate(url, root / "reports", "run-exit", date(2026, 11, 24), suites=["probe"])
assert outcome.success, outcome.summary()
"""


def test_a_process_that_ran_the_gate_exits_without_nanobind_leak_warnings(tmp_path):
    """A process that ran the gate on DuckDB used to end with dozens of "nanobind: leaked N
    instances" lines on stderr (DuckDB's module-level type constants outliving its bindings'
    final count: GX keeps SQLAlchemy, and through duckdb-engine ``duckdb``, alive into the
    shutdown); the exit hook the gate's engine registers releases duckdb-engine's hold first
    (docs/decisions.md, "DuckDB's exit without leak warnings"). This script printed 27
    leaked instances without the hook (duckdb 2.0.0, GX 1.24.1). A fresh interpreter: the
    lines are printed at its exit only."""
    import subprocess
    import sys

    from trialscreen.validate import EXPECTATIONS_DIR_ENV

    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "probe.yml").write_text(
        "suite: probe\nassets:\n  - name: marts.probe\n    table: marts.probe\n"
        "    columns: {n: int}\n    expectations:\n"
        "      - {type: expect_table_row_count_to_equal, kwargs: {value: 2}, blocking: true}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", _GATE_THEN_EXIT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, EXPECTATIONS_DIR_ENV: str(tmp_path / "suites")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nanobind" not in done.stderr, done.stderr[:2000]


CHECK_SUITE = """\
suite: probe
description: the same SQL check, validated from its rows in memory or as a query asset
assets:
  - name: check.probe_counts
    requires: [marts.probe]
    sql: |
      select label, count(*) as n_rows, sum(n) as total from marts.probe group by label
    columns: {label: string, n_rows: int, total: int}
    expectations:
      - {type: expect_column_values_to_be_between, kwargs: {column: total, max_value: 4},
         blocking: true}
      - {type: expect_column_values_to_be_between, kwargs: {column: n_rows, max_value: 1},
         blocking: false}
"""


@pytest.mark.parametrize("rows_in_memory", [1000, 2])
def test_a_sql_check_gives_the_same_outcome_read_once_or_queried_by_gx(
    tmp_path, monkeypatch, rows_in_memory
):
    """docs/decisions.md "A check's SQL runs once": a check's result of up to
    CHECK_ROWS_IN_MEMORY rows is computed once and validated in memory; a larger one stays a
    query asset that GX runs on the warehouse. Both give the same failures, with the rows'
    values as evidence."""
    from trialscreen.validate import runner, validate
    from trialscreen.validate.suites import load_suite

    monkeypatch.setattr(runner, "CHECK_ROWS_IN_MEMORY", rows_in_memory)
    url = _probe_warehouse(
        tmp_path, monkeypatch, CHECK_SUITE, "(1, 'a'), (2, 'b'), (5, 'c'), (1, 'c')"
    )
    with Warehouse.connect(url) as wh:
        suite = load_suite("probe", "run-check", SCREENING_DATE, directory=tmp_path / "suites")
        sql, _, info = runner.asset_query(wh, suite.assets[0])
    assert (sql is None) == (rows_in_memory >= 3)  # three labels: three rows
    assert info.rows == 3

    outcome = validate(url, tmp_path / "reports", "run-check", SCREENING_DATE, suites=["probe"])

    assert outcome.expectations_evaluated == 2
    assert [(f["column"], f["observed"]) for f in outcome.blocking_failures] == [
        ("total", "1 of 3 rows unexpected (e.g. 6)")
    ]
    assert [(w["column"], w["observed"]) for w in outcome.warnings] == [
        ("n_rows", "1 of 3 rows unexpected (e.g. 2)")
    ]
    assert not outcome.success
