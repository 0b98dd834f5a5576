"""The coordinators' worklist over two nights (issue 12 items 4-5).

Night 1 runs the pipeline on a generated population; between the nights a coordinator marks
one candidate screen-failed (``trialscreen worklist mark``), imports a "contacted" for another
from a CSV, and the hospital's research-contact opt-out list gains a third. Night 2 runs the
same drop one day later. Then:

* the worklist page renders in headless Chromium, is ordered by readiness, shows night 1's
  decisions (who, when, reason), and the screen-failed patient is not new;
* the opted-out patient is on no worklist output (restricted.worklist, page, snapshot,
  exports), only in the count;
* CSV and XLSX exports hold the page's rows, are 0600, and each wrote an audit row;
* the analysts get the accrual counts (marts.worklist_accrual) without identities.
"""

from __future__ import annotations

import csv
import os
import subprocess
from datetime import date, timedelta
from typing import Any

import pytest

from trialscreen import cli, pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.synth import generate
from trialscreen.warehouse import Warehouse
from trialscreen.worklist import DecisionStore, Worklist, latest_snapshot
from trialscreen.worklist.decisions import STORE_ENV, USER_ENV

KEY = "worklist-test-key"
NIGHT_1 = date(2026, 11, 20)
PATIENTS, SEED = 150, 11


def _candidates(worklist: Worklist) -> list[Any]:
    return [e for e in worklist.entries if not e.is_no_longer_eligible]


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("worklist")
    drop, reports, wl_dir = root / "drop", root / "reports", root / "restricted" / "worklist"
    warehouse = root / "wh.duckdb"
    opt_outs = root / "restricted" / "research_opt_outs.csv"
    generate(patients=PATIENTS, seed=SEED, out=drop, screening_date=NIGHT_1)
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    mp.setenv("TRIALSCREEN_WORKLIST_DIR", str(wl_dir))
    mp.delenv(STORE_ENV, raising=False)
    mp.delenv("TRIALSCREEN_OPT_OUT_FILE", raising=False)
    try:
        first = run_pipeline(drop, NIGHT_1, warehouse, reports_dir=reports)
        assert first.published, first.message
        with latest_snapshot(wl_dir) as snapshot:
            night1 = snapshot.load()
        # three different patients, each a candidate in exactly one cohort of axiom
        once: dict[str, list[Any]] = {}
        for e in _candidates(night1):
            once.setdefault(e.mrn, []).append(e)
        single = [v[0] for v in once.values() if len(v) == 1]
        assert len(single) >= 3, "the population has too few candidates for this test"
        failed, contacted, opted = single[0], single[1], single[2]
        mp.setenv(USER_ENV, "coordinator.alice")
        assert (
            cli.main(
                [
                    "worklist",
                    "mark",
                    "--trial",
                    failed.trial_id,
                    "--cohort",
                    failed.cohort_id,
                    "--mrn",
                    failed.mrn,
                    "--outcome",
                    "screen_failed",
                    "--reason",
                    "on a competing study",
                ]
            )
            == 0
        )
        decisions_csv = root / "decisions.csv"
        decisions_csv.write_text(
            f"mrn,cohort_id,outcome,reason\n{contacted.mrn},{contacted.cohort_id},contacted,\n",
            encoding="utf-8",
        )
        assert cli.main(["worklist", "import", str(decisions_csv), "--trial", "axiom"]) == 0
        opt_outs.write_text(f"mrn\n{opted.mrn}\n", encoding="utf-8")
        mp.setenv("TRIALSCREEN_OPT_OUT_FILE", str(opt_outs))
        second = run_pipeline(drop, NIGHT_1 + timedelta(days=1), warehouse, reports_dir=reports)
        assert second.published, second.message
        with latest_snapshot(wl_dir) as snapshot:
            night2 = snapshot.load()
        with DecisionStore(wl_dir / "decisions.sqlite") as store:
            night2.apply(store.latest())
        exports = {}
        for fmt in ("csv", "xlsx"):
            out = root / f"export.{fmt}"
            assert (
                cli.main(
                    ["worklist", "export", "--trial", "axiom", "--format", fmt, "--out", str(out)]
                )
                == 0
            )
            exports[fmt] = out
        yield {
            "root": root,
            "warehouse": warehouse,
            "reports": reports,
            "dir": wl_dir,
            "night1": night1,
            "night2": night2,
            "run2": second.run_id,
            "failed": failed,
            "contacted": contacted,
            "opted": opted,
            "exports": exports,
        }
    finally:
        mp.undo()


def _entry(worklist: Worklist, like: Any) -> Any:
    found = [
        e
        for e in worklist.entries
        if (e.trial_id, e.cohort_id, e.mrn) == (like.trial_id, like.cohort_id, like.mrn)
    ]
    assert len(found) == 1
    return found[0]


def test_the_page_is_written_per_run_in_the_restricted_directory(nights) -> None:
    page = nights["dir"] / nights["run2"] / "worklist.html"
    assert page.is_file()
    assert nights["dir"].stat().st_mode & 0o777 == 0o700
    for path in nights["dir"].rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == expected, path
    assert not list(nights["reports"].rglob("worklist*"))


def test_a_decision_of_night_1_is_shown_on_night_2(nights) -> None:
    failed = _entry(nights["night2"], nights["failed"])
    assert failed.decision["outcome"] == "screen_failed"
    assert failed.decision["reason"] == "on a competing study"
    assert failed.decision["recorded_by"] == "coordinator.alice"
    assert failed.decision["candidate_status"] == nights["failed"].candidate_status
    page = (nights["dir"] / nights["run2"] / "worklist.html").read_text(encoding="utf-8")
    assert "on a competing study" in page and "coordinator.alice" in page
    contacted = _entry(nights["night2"], nights["contacted"])
    assert contacted.decision["outcome"] == "contacted"


def test_a_screen_failed_unchanged_patient_is_not_new_and_sorts_after_open_ones(nights) -> None:
    night1 = _entry(nights["night1"], nights["failed"])
    night2 = _entry(nights["night2"], nights["failed"])
    assert night1.is_new  # new on night 1 (the first run)
    assert night2.candidate_status == night1.candidate_status
    assert not night2.is_new and night2.is_closed
    cohort = nights["night2"].for_cohort(night2.trial_id, night2.cohort_id)
    open_entries = [e for e in cohort if not e.is_closed and not e.is_no_longer_eligible]
    assert cohort.index(night2) >= len(open_entries)


def test_the_worklist_is_ordered_by_readiness(nights) -> None:
    worklist = nights["night2"]
    for trial, cohort in worklist.cohorts():
        keys = [e.sort_key()[:5] for e in worklist.for_cohort(trial, cohort)]
        assert keys == sorted(keys)
        statuses = [
            e.candidate_status
            for e in worklist.for_cohort(trial, cohort)
            if not e.is_closed and not e.is_no_longer_eligible
        ]
        ready = statuses.count("ready_for_review")
        assert statuses[:ready] == ["ready_for_review"] * ready


def test_an_opted_out_patient_appears_only_as_a_count(nights) -> None:
    opted = nights["opted"]
    assert opted.mrn not in {e.mrn for e in nights["night2"].entries}
    assert nights["night2"].opted_out.get(f"{opted.trial_id}/{opted.cohort_id}") == 1
    for path in nights["dir"].rglob("*"):
        if (
            path.is_file()
            and path.suffix in (".html", ".sqlite")
            and path.name != "decisions.sqlite"
        ):
            listed = opted.mrn.encode() in path.read_bytes()
            assert listed == (nights["night1"].run_id in str(path)), path
    for out in nights["exports"].values():
        assert opted.mrn.encode() not in out.read_bytes()
    with Warehouse.connect(nights["warehouse"]) as wh:
        assert not wh.query("select 1 from restricted.worklist where mrn = ?", [opted.mrn])


def test_exports_hold_the_pages_rows_and_are_audited(nights) -> None:
    from openpyxl import load_workbook

    csv_path, xlsx_path = nights["exports"]["csv"], nights["exports"]["xlsx"]
    with csv_path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = sum(len(e.criteria) for e in nights["night2"].for_trial("axiom"))
    assert len(rows) == expected
    assert {"mrn", "criterion_status", "threshold", "evidence_date", "reason", "next_step"} <= set(
        rows[0]
    )
    failed = nights["failed"]
    assert {r["decision"] for r in rows if r["mrn"] == failed.mrn} == {"screen_failed"}
    sheet = load_workbook(xlsx_path, read_only=True).active
    assert sum(1 for _ in sheet.iter_rows()) == expected + 1  # streamed: no stored dimension
    for path in (csv_path, xlsx_path):
        assert path.stat().st_mode & 0o777 == 0o600
    with DecisionStore(nights["dir"] / "decisions.sqlite", readonly=True) as store:
        audit = store.exports()
    assert [(a["format"], a["rows"], a["exported_by"]) for a in audit] == [
        ("csv", expected, "coordinator.alice"),
        ("xlsx", expected, "coordinator.alice"),
    ]
    with Warehouse.connect(nights["warehouse"]) as wh:
        pages = wh.query("select format, exported_by from audit.worklist_exports order by 1")
    assert pages == [("html", "nightly run"), ("html", "nightly run")]


def test_analysts_get_the_accrual_counts_without_identities(nights) -> None:
    with Warehouse.connect(nights["warehouse"]) as wh:
        counts = wh.query(
            "select trial_id, cohort_id, outcome, patients from marts.worklist_accrual order by 3"
        )
        columns = {
            r[0]
            for r in wh.query(
                "select column_name from information_schema.columns "
                "where table_schema = 'marts' and table_name = 'worklist_accrual'"
            )
        }
        merged = wh.query("select count(*) from restricted.worklist_decisions")
    failed, contacted = nights["failed"], nights["contacted"]
    assert counts == [
        (contacted.trial_id, contacted.cohort_id, "contacted", 1),
        (failed.trial_id, failed.cohort_id, "screen_failed", 1),
    ]
    assert columns == {"run_id", "trial_id", "cohort_id", "outcome", "patients"}
    assert merged == [(2,)]


def test_mark_refuses_a_patient_not_on_the_worklist(nights, capsys) -> None:
    os.environ["TRIALSCREEN_WORKLIST_DIR"] = str(nights["dir"])
    try:
        code = cli.main(
            [
                "worklist",
                "mark",
                "--trial",
                "axiom",
                "--cohort",
                "asps",
                "--mrn",
                "MRN-NOT-LISTED-1",
                "--outcome",
                "contacted",
            ]
        )
    finally:
        del os.environ["TRIALSCREEN_WORKLIST_DIR"]
    err = capsys.readouterr().err
    assert code == 1 and "no such patient" in err and "MRN-NOT-LISTED-1" not in err


@pytest.mark.browser
def test_the_worklist_renders_in_headless_chromium(nights, chromium, tmp_path) -> None:
    page = nights["dir"] / nights["run2"] / "worklist.html"
    base = [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ]
    dom = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    failed = nights["failed"]
    assert f'id="worklist-{failed.trial_id}-{failed.cohort_id}"' in dom.stdout
    assert failed.mrn in dom.stdout and "screen-failed" in dom.stdout
    assert "declined research contact" in dom.stdout
    shot = tmp_path / "worklist.png"
    done = subprocess.run(
        [
            *base,
            f"--user-data-dir={tmp_path / 'p2'}",
            f"--screenshot={shot}",
            "--window-size=1280,1600",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
