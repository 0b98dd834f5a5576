"""trialscreen.worklist without a warehouse: the decisions store, the rules that decide what a
coordinator sees (new, closed, order), the page's escaping and the exports' safety. The
warehouse side (restricted.worklist over two nights, Chromium) is tests/e2e/test_worklist.py;
the PostgreSQL roles are tests/test_worklist_roles.py."""

from __future__ import annotations

import csv
import importlib
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from trialscreen.worklist import Decision, DecisionError, DecisionStore, Worklist, mark, snapshot
from trialscreen.worklist.build import Criterion, Entry
from trialscreen.worklist.decisions import read_decisions_csv
from trialscreen.worklist.export import export
from trialscreen.worklist.render import render, write_page
from trialscreen.worklist.snapshot import Snapshot


def _entry(mrn: str, status: str, n_unknown: int = 0, **kw: object) -> Entry:
    fields: dict[str, object] = {
        "trial_id": "axiom",
        "cohort_id": "asps",
        "patient_key": f"key-{mrn}",
        "mrn": mrn,
        "family_name": "Doe",
        "given_name": "Jane",
        "birth_date": "1960-01-01",
        "age_years": 66,
        "candidate_status": status,
        "n_unknown": n_unknown,
        "is_new_in_marts": True,
        "is_no_longer_eligible": False,
        "previous_status": None,
        "first_eligible_on": "2026-11-20",
    }
    fields.update(kw)
    entry = Entry(**fields)  # type: ignore[arg-type]
    entry.criteria = [
        Criterion("anc", "ANC", "met", 1.9, "10*9/L", 1.5, "2026-11-01", "ANC 1.9 ≥ 1.5"),
        Criterion(
            "ecog",
            "Performance status",
            "unknown" if n_unknown else "met",
            None,
            None,
            2.0,
            None,
            "no ECOG or Karnofsky in 30 days",
            extra={"next_step": "Record ECOG at the next visit", "margin": None},
        ),
    ]
    return entry


def _worklist(*entries: Entry) -> Worklist:
    return Worklist(
        run_id="run-1",
        screening_date="2026-11-20",
        built_at="2026-11-20T03:00:00",
        entries=list(entries),
        opted_out={"axiom/asps": 2},
        extra_columns=["margin", "next_step"],
    )


@pytest.fixture()
def store(tmp_path: Path):
    with DecisionStore(tmp_path / "private" / "decisions.sqlite") as s:
        yield s


def test_the_store_file_is_private_and_decisions_round_trip(store, tmp_path) -> None:
    path = tmp_path / "private" / "decisions.sqlite"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    store.record([Decision("axiom", "asps", "MRN1", "screen_failed", reason="declined biopsy")])
    (d,) = store.decisions()
    assert (d.outcome, d.reason, d.recorded_by) == (
        "screen_failed",
        "declined biopsy",
        d.recorded_by,
    )
    assert d.recorded_by and isinstance(d.recorded_at, datetime) and len(d.decision_id) == 32


def test_the_latest_decision_per_patient_is_the_current_one(store) -> None:
    store.record([Decision("axiom", "asps", "MRN1", "contacted", recorded_by="alice")])
    store.record([Decision("axiom", "asps", "MRN1", "consented", recorded_by="bob")])
    assert store.latest()[("axiom", "asps", "MRN1")].outcome == "consented"
    assert [d.outcome for d in store.decisions()] == ["contacted", "consented"]


@pytest.mark.parametrize(
    ("decision", "field"),
    [
        (Decision("axiom", "asps", "MRN1", "maybe"), "outcome"),
        (Decision("axiom", "asps", "MRN1", "screen_failed"), "reason"),
        (Decision("axiom", "", "MRN1", "reviewed"), "cohort_id"),
    ],
)
def test_a_bad_decision_is_refused_naming_the_field(store, decision, field) -> None:
    with pytest.raises(DecisionError, match=field):
        store.record([decision])
    assert store.decisions() == []


def test_a_readonly_store_nobody_wrote_reads_empty(tmp_path) -> None:
    with DecisionStore(tmp_path / "absent.sqlite", readonly=True) as s:
        assert s.decisions() == [] and s.exports() == []
    assert not (tmp_path / "absent.sqlite").exists()


def test_the_store_takes_decisions_while_another_connection_holds_a_read(store, tmp_path) -> None:
    reader = sqlite3.connect(tmp_path / "private" / "decisions.sqlite")
    reader.execute("begin")
    reader.execute("select count(*) from worklist_decisions").fetchall()
    try:
        assert store.record([Decision("axiom", "asps", "MRN1", "reviewed")]) == 1
    finally:
        reader.close()


def test_csv_import_names_the_line_not_the_patient(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "mrn,cohort_id,outcome,reason\nMRN1,asps,contacted,\nMRN-SECRET,asps,screen-failed,\n",
        encoding="utf-8",
    )
    with pytest.raises(DecisionError, match="line 3: reason") as err:
        read_decisions_csv(path, default_trial="axiom")
    assert "MRN-SECRET" not in str(err.value)


def test_mark_keeps_the_status_the_coordinator_saw_and_refuses_unlisted(store) -> None:
    worklist = _worklist(_entry("MRN1", "missing_data", 1))
    mark(store, worklist, [Decision("axiom", "asps", "MRN1", "reviewed")])
    (d,) = store.decisions()
    assert (d.candidate_status, d.run_id) == ("missing_data", "run-1")
    with pytest.raises(DecisionError, match="no such patient") as err:
        mark(store, worklist, [Decision("axiom", "asps", "MRN9", "reviewed")])
    assert "MRN9" not in str(err.value)


def test_a_decision_suppresses_new_until_the_status_changes() -> None:
    same = _entry("MRN1", "missing_data", 1)
    same.decision = {"outcome": "screen_failed", "candidate_status": "missing_data"}
    assert not same.is_new and same.is_closed
    changed = _entry("MRN2", "ready_for_review")
    changed.decision = {"outcome": "screen_failed", "candidate_status": "missing_data"}
    assert changed.is_new and not changed.is_closed
    undecided = _entry("MRN3", "ready_for_review")
    assert undecided.is_new


def test_order_is_ready_then_missing_by_unknowns_then_rescreen_date() -> None:
    entries = [
        _entry("MRN5", "missing_data", 3),
        _entry("MRN4", "missing_data", 1, rescreen_by="2026-12-20"),
        _entry("MRN3", "missing_data", 1, rescreen_by="2026-12-01"),
        _entry("MRN2", "ready_for_review", 0, is_no_longer_eligible=True),
        _entry("MRN1", "ready_for_review"),
    ]
    closed = _entry("MRN0", "ready_for_review")
    closed.decision = {"outcome": "not_interested", "candidate_status": "ready_for_review"}
    ordered = _worklist(*entries, closed).for_cohort("axiom", "asps")
    assert [e.mrn for e in ordered] == ["MRN1", "MRN3", "MRN4", "MRN5", "MRN0", "MRN2"]


def test_the_page_escapes_data_and_counts_opt_outs() -> None:
    entry = _entry("MRN1", "missing_data", 1, family_name="<script>x()</script>")
    page = render(_worklist(entry))
    assert "<script>x()" not in page and "&lt;script&gt;x()" in page
    assert "2 patient(s) who declined research contact" in page
    assert "Record ECOG at the next visit" in page
    assert "default-src 'none'" in page  # no script, no remote resource


def test_exports_are_private_neutralize_formulas_and_are_audited(store, tmp_path) -> None:
    entry = _entry("MRN1", "missing_data", 1, given_name="=HYPERLINK(1)")
    out = tmp_path / "x.csv"
    n = export(_worklist(entry), store, out, "csv", "axiom", who="alice")
    assert n == 2 and out.stat().st_mode & 0o777 == 0o600
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["given_name"] for r in rows} == {"'=HYPERLINK(1)"}
    assert rows[1]["next_step"] == "Record ECOG at the next visit"
    (audit,) = store.exports()
    assert (audit["exported_by"], audit["format"], audit["rows"]) == ("alice", "csv", 2)
    assert "run-1" in audit["what"]


def test_the_snapshot_round_trips_without_decisions(tmp_path) -> None:
    entry = _entry("MRN1", "missing_data", 1)
    entry.decision = {"outcome": "reviewed", "candidate_status": "missing_data"}
    path = tmp_path / "worklist.sqlite"
    snapshot.write(path, _worklist(entry))
    assert path.stat().st_mode & 0o777 == 0o600
    with Snapshot(path) as snap:
        back = snap.load()
    assert back.entries[0].criteria[1].extra["next_step"] == "Record ECOG at the next visit"
    assert back.entries[0].criteria[0].value == 1.9
    assert back.entries[0].decision is None and back.opted_out == {"axiom/asps": 2}
    assert back.entries[0].is_new_in_marts is True


def _mixed() -> list[Entry]:
    """Entries covering every part of the order: readiness, unknowns, re-screen dates (and
    none), closed and reopened decisions, no longer eligible, two cohorts."""
    entries = []
    for n in range(40):
        status = ("ready_for_review", "missing_data", "ineligible")[n % 3]
        entries.append(
            _entry(
                f"MRN{(n * 7919) % 97:03d}",
                status,
                n % 4,
                cohort_id=("asps", "safety_run_in")[n % 2],
                rescreen_by=None if n % 5 == 0 else f"2026-12-{1 + n % 28:02d}",
                is_no_longer_eligible=n % 11 == 0,
            )
        )
    return entries


def _decisions(entries: list[Entry]) -> dict[tuple[str, str, str], Decision]:
    out = {}
    for n, e in enumerate(entries[::3]):
        outcome = ("screen_failed", "contacted", "not_interested")[n % 3]
        status = e.candidate_status if n % 2 == 0 else "missing_data"
        out[(e.trial_id, e.cohort_id, e.mrn)] = Decision(
            e.trial_id, e.cohort_id, e.mrn, outcome, reason="r", candidate_status=status
        )
    return out


def test_the_snapshot_orders_as_the_in_memory_worklist(tmp_path) -> None:
    """The page's order is SQL in the snapshot and Entry.sort_key in memory: the same."""
    entries = _mixed()
    decisions = _decisions(entries)
    memory = _worklist(*entries).apply(decisions)
    path = tmp_path / "worklist.sqlite"
    snapshot.write(path, _worklist(*_mixed()))
    with Snapshot(path) as snap:
        snap.apply(decisions)
        assert snap.cohorts() == memory.cohorts() == [("axiom", "asps"), ("axiom", "safety_run_in")]
        expected = [
            [(e.mrn, e.is_closed, e.is_new) for e in memory.for_cohort(trial, cohort)]
            for trial, cohort in memory.cohorts()
        ]
        got = [
            [(e.mrn, e.is_closed, e.is_new) for e in snap.ordered(trial, cohort)]
            for trial, cohort in snap.cohorts()
        ]
        assert got == expected
        assert any(closed for cohort in expected for _, closed, _ in cohort)
        assert snap.rows("axiom") == memory.rows("axiom") == 80
        assert snap.find("axiom", "asps", entries[0].mrn) is not None
        assert snap.find("axiom", "asps", "MRN-NOT-LISTED") is None


def test_the_page_lists_the_first_patients_of_each_cohort_and_counts_all(tmp_path) -> None:
    path = tmp_path / "worklist.sqlite"
    snapshot.write(path, _worklist(*_mixed()))
    with Snapshot(path) as snap:
        first = [e.mrn for e in snap.ordered("axiom", "asps")][:3]
        page = tmp_path / "worklist.html"
        shown = write_page(page, snap, limit=3)
    text = page.read_text(encoding="utf-8")
    assert shown == 2 * 3 * 2  # two cohorts, three patients, two criteria each
    assert text.count('class="patient"') == 6
    assert all(f'id="p-axiom-asps-key-{mrn}"' in text for mrn in first)
    assert "The first 3 of 20 patients" in text
    assert "trialscreen worklist export --trial axiom" in text
    assert render(_worklist(*_mixed())).count('class="patient"') == 40  # no limit: all


def test_an_xlsx_too_large_for_a_sheet_is_refused_before_writing(
    store, tmp_path, monkeypatch
) -> None:
    export_module = importlib.import_module("trialscreen.worklist.export")  # not the function

    monkeypatch.setattr(export_module, "XLSX_ROWS", 3)
    out = tmp_path / "x.xlsx"
    with pytest.raises(ValueError, match="export --format csv"):
        export_module.export(_worklist(*_mixed()[:2]), store, out, "xlsx")
    assert not out.exists() and store.exports() == []
    assert export_module.export(_worklist(*_mixed()[:1]), store, out, "xlsx") == 2
