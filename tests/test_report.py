"""The screening report (trialscreen.report) from the hand-written warehouse of test_validate.

The page is asserted on as text (ids, counts, no PHI) and, marked ``browser``, rendered in
headless Chromium (installed from Debian when missing).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_validate import (
    PHI_BIRTH,
    PHI_FAMILY,
    PHI_FILE,
    PHI_GIVEN,
    PHI_MRN,
    build_clean,
)

RUN_ID = "run-clean"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from trialscreen.report import write_report
    from trialscreen.validate import ValidationOutcome

    url = build_clean(tmp_path_factory.mktemp("wh") / "wh.duckdb", RUN_ID)
    reports_dir = tmp_path_factory.mktemp("reports")
    # a recorded outcome (the report does not run GX itself)
    outcome = ValidationOutcome(
        run_id=RUN_ID,
        screening_date=__import__("datetime").date(2026, 11, 2),
        success=True,
        warnings=[
            {
                "suite": "feeds",
                "asset": "check.hl7_freshness",
                "expectation": "expect_column_values_to_be_between",
                "column": "days_since_latest_observation",
                "observed": "1 of 1 rows unexpected (e.g. 40)",
            }
        ],
        data_docs_index=reports_dir / "data_docs/gx/uncommitted/data_docs/local_site/index.html",
        suites=["feeds", "marts"],
        expectations_evaluated=120,
    )
    path = write_report(url, reports_dir, RUN_ID, outcome)
    return path, reports_dir


def test_report_files_are_written(report):
    path, reports_dir = report
    assert path == reports_dir / RUN_ID / "report.html"
    assert (reports_dir / "latest" / "report.html").read_text() == path.read_text()
    index = (reports_dir / "index.html").read_text()
    assert f'href="{RUN_ID}/report.html"' in index


def test_report_has_a_funnel_per_trial_and_cohort(report):
    html = report[0].read_text()
    for cohort in ("asps", "safety_run_in"):
        assert f'id="funnel-axiom-{cohort}"' in html
        assert f'id="criteria-axiom-{cohort}"' in html
        assert f'id="candidates-axiom-{cohort}"' in html


def test_report_counts_match_the_marts(report):
    html = report[0].read_text()
    cards = re.search(r'id="candidates-axiom-asps">(.*?)</div></div>', html).group(1)
    metric = dict(
        (m, int(n)) for m, n in re.findall(r'data-metric="(\w+)"><b>(\d+)</b>', cards + "</div>")
    )
    # 6 patients: p1, p5 ready; p2, p6 missing data; p3, p4 ineligible; p1 not new
    assert metric == {
        "patients_screened": 6,
        "ready_for_review": 2,
        "missing_data": 2,
        "ineligible": 2,
        "newly_eligible": 3,
    }
    funnel = re.search(r'<svg id="funnel-axiom-asps".*?</svg>', html).group(0)
    # age removes p4, anc removes p3: 6 -> 5 -> 4 -> 4 -> 4
    assert re.findall(r'class="num">(\d+)', funnel) == ["6", "5", "4", "4", "4"]
    assert "(−1)" in funnel
    assert 'id="feed-nights-fhir"' in html and 'id="feed-nights-hl7"' in html
    assert "Observation without a subject reference" in html
    quarantine = re.search(r'id="quarantine-per-feed">(.*?)</table>', html).group(1)
    assert '<td class="">fhir</td><td class="n">2</td>' in quarantine
    issues = re.search(r'id="value-issues-table">(.*?)</table>', html).group(1)
    assert "implausible" in issues and "unmapped_unit" in issues
    assert "days_since_latest_observation" in html  # the warning
    assert 'id="data-docs-link" href="../data_docs/' in html


def test_report_carries_no_phi_and_no_script(report):
    html = report[0].read_text()
    for secret in (PHI_MRN, PHI_FAMILY, PHI_GIVEN, PHI_BIRTH.isoformat(), PHI_FILE):
        assert secret not in html
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html


def test_every_text_the_report_renders_from_data_is_escaped():
    """docs/decisions.md "Free text from source records": every HTML page escapes what it
    renders from data — here markup in every text field the page shows."""
    from datetime import date, datetime

    import polars as pl

    from trialscreen.report import ReportData, render
    from trialscreen.validate import ValidationOutcome

    bad = '<script>x()</script>"><img src=x onerror=y>'
    data = ReportData(
        run_id="run-1",
        screening_date=date(2026, 11, 2),
        status=bad,
        run_row={"trial_ids": bad, "started_at": bad, "finished_at": bad, "message": bad},
        marts_run_id=bad,
        funnel=pl.DataFrame(
            {
                "trial_id": [bad],
                "cohort_id": [bad],
                "ordinal": [1],
                "criterion_id": [bad],
                "patients_screened": [3],
                "patients_removed": [1],
                "patients_remaining": [2],
            }
        ),
        outcomes=pl.DataFrame(
            {
                "trial_id": [bad],
                "cohort_id": [bad],
                "criterion_id": [bad],
                "met": [1],
                "not_met": [1],
                "unknown": [1],
                "review": [0],
            }
        ),
        candidates=pl.DataFrame(
            {"trial_id": [bad], "cohort_id": [bad], "candidate_status": [bad], "patients": [3]}
        ),
        volumes=pl.DataFrame(
            {
                "run_id": [bad],
                "feed": [bad],
                "records_in": [3],
                "loaded": [1],
                "duplicates_skipped": [1],
                "quarantined": [1],
                "finished_at": [datetime(2026, 11, 2)],
            }
        ),
        freshness=pl.DataFrame(
            {
                "feed": [bad],
                "latest_record_on": [date(2026, 11, 1)],
                "days_before_screening_date": [1],
                "future_dated": [0],
                "records_this_run": [3],
            }
        ),
        nights=pl.DataFrame(
            {
                "feed": [bad, bad],
                "night": [date(2026, 11, 1), date(2026, 11, 2)],
                "runs": [1, 1],
                "records_in": [3, 0],
                "loaded": [1, 0],
                "duplicates_skipped": [1, 0],
                "quarantined": [1, 0],
                "trailing_median": [None, 3.0],
                "flag": [None, "no_records"],
            }
        ),
        unmapped_units=pl.DataFrame(
            {"feed": [bad], "analyte": [bad], "unit_as_sent": [bad], "results": [1]}
        ),
        accrual=pl.DataFrame(
            {
                "trial_id": [bad],
                "cohort_id": [bad],
                "night": [date(2026, 11, 2)],
                "candidates": [2],
                "newly_eligible": [1],
                "no_longer_eligible": [0],
            }
        ),
        labels={
            "trials": {bad: {"title": bad, "nct_id": bad}},
            "cohorts": {(bad, bad): bad},
            "criteria": {(bad, bad): bad},
        },
        quarantine=pl.DataFrame({"feed": [bad], "scope": [bad], "error": [bad], "records": [1]}),
        value_issues=pl.DataFrame({"analyte": [bad], "value_issue": [bad], "results": [1]}),
        validation=ValidationOutcome(
            run_id="run-1",
            screening_date=date(2026, 11, 2),
            success=False,
            blocking_failures=[{k: bad for k in ("suite", "asset", "expectation", "column")}],
            warnings=[{"observed": bad}],
            suites=[bad],
        ),
    )
    page = render(data, docs_href=bad)
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;" in page


def test_report_renders_without_marts(tmp_path):
    from trialscreen.report import write_report

    path = write_report(f"duckdb:///{tmp_path / 'empty.duckdb'}", tmp_path / "r", "run-1")
    assert "No marts yet" in path.read_text()


# --------------------------------------------------------------------------------------------
def _chromium(binary: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(binary),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report, chromium, tmp_path):
    path, reports_dir = report
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", path.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="funnel-axiom-asps"' in dom.stdout
    assert 'id="criteria-axiom-safety_run_in"' in dom.stdout
    shot = reports_dir / RUN_ID / "report.png"
    done = _chromium(
        chromium,
        tmp_path / "profile2",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        path.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")
