"""trialscreen.worklist: the decisions store, the rules that decide what a coordinator sees
(new, closed, order), the page's escaping and the exports' safety, without a warehouse; and
the snapshot written from a hand-made restricted.worklist (DuckDB, PostgreSQL) row for row as
the same worklist written as entries. The warehouse side over two nights (Chromium) is
tests/e2e/test_worklist.py; the PostgreSQL roles are tests/test_worklist_roles.py."""

from __future__ import annotations

import csv
import importlib
import sqlite3
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trialscreen.warehouse import Warehouse
from trialscreen.worklist import (
    Decision,
    DecisionError,
    DecisionStore,
    Worklist,
    mark,
    snapshot,
    write_worklist,
)
from trialscreen.worklist.build import (
    CRITERION_COLUMNS,
    CRITERION_DETAIL,
    PATIENT_COLUMNS,
    Criterion,
    Entry,
    read_frames,
)
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


# --- the snapshot written from restricted.worklist --------------------------------------

# a column a later release adds (kept per criterion), and one of a type the snapshot keeps as
# text (a time of day)
LATER = ("evidence_note", "evidence_time")
DATES = ("screening_date", "birth_date", "first_eligible_on", "rescreen_by")
TYPES = {  # column -> (DuckDB, PostgreSQL)
    **{c: ("date", "date") for c in (*DATES, "evidence_date", "valid_until")},
    "evidence_at": ("timestamp", "timestamp"),
    "evidence_time": ("time", "time"),
    **{c: ("boolean", "boolean") for c in ("is_new", "is_no_longer_eligible", "near_flip")},
    "age_years": ("bigint", "integer"),
    "criterion_ordinal": ("integer", "integer"),
    "n_unknown": ("hugeint", "numeric"),  # a sum: a decimal on both engines
    **{c: ("decimal(12,4)", "numeric") for c in ("value_numeric", "margin")},
    **{c: ("double", "double precision") for c in ("threshold", "uln")},
}
WORKLIST_COLUMNS = (*PATIENT_COLUMNS, *CRITERION_COLUMNS, *CRITERION_DETAIL, *LATER)


def _patient(trial: str, cohort: str, mrn: str, **kw: object) -> dict[str, object]:
    return {
        "run_id": "run-1",
        "screening_date": date(2026, 11, 20),
        "trial_id": trial,
        "cohort_id": cohort,
        "patient_key": f"key-{mrn}",
        "mrn": mrn,
        "family_name": "Doe",
        "given_name": "Jane",
        "birth_date": date(1960, 1, 2),
        "age_years": 66,
        "candidate_status": "ready_for_review",
        "n_unknown": Decimal(0),
        "is_new": True,
        "is_no_longer_eligible": False,
        "first_eligible_on": date(2026, 11, 20),
        **kw,
    }


def _criterion(n: int, criterion: str, label: str | None, status: str, **kw: object) -> dict:
    return {
        "criterion_id": criterion,
        "criterion_ordinal": n,
        "criterion_label": label,
        "criterion_status": status,
        "reason": f"{criterion} {status}",
        **kw,
    }


ANC = {
    "value_numeric": Decimal("1.9000"),
    "value_unit": "10*9/L",
    "comparator": ">=",
    "threshold": 1.5,
    "uln": 2.0,
    "margin": Decimal("0.4000"),
    "near_flip": False,
    "evidence_source": "hl7",
    "evidence_at": datetime(2026, 11, 1, 8, 30),
    "evidence_date": date(2026, 11, 1),
    "valid_until": date(2026, 12, 1),
    "evidence_time": time(8, 30),
}
P1, P2 = (
    _patient("axiom", "asps", "MRN001"),
    _patient(
        "axiom",
        "asps",
        "MRN002",
        family_name=None,
        birth_date=None,
        age_years=None,
        candidate_status="missing_data",
        n_unknown=Decimal(2),
        is_new=None,
        rescreen_by=date(2026, 12, 5),
        sole_missing_criterion="ecog",
        sole_missing_next_step="Record ECOG",
    ),
)
P3 = _patient("axiom", "safety_run_in", "MRN003", previous_status="missing_data")
P4 = _patient(
    "beacon",
    "main",
    "MRN004",
    candidate_status="ineligible",
    is_new=False,
    is_no_longer_eligible=True,
    previous_status="ready_for_review",
    first_eligible_on=None,
)
# restricted.worklist's rows as the warehouse holds them, not in the worklist's order
ROWS = [
    {**P2, **_criterion(3, "crcl", "Creatinine clearance", "met", value_numeric=Decimal("55.5"))},
    {**P1, **_criterion(1, "anc", "ANC", "met", **ANC)},
    {**P4, **_criterion(1, "anc", "ANC", "not_met", **ANC, evidence_note="repeat lab")},
    {**P2, **_criterion(1, "anc", "ANC", "met", **ANC)},
    {**P3, **_criterion(1, "anc", None, "met", **ANC)},
    {
        **P1,
        **_criterion(
            2,
            "ecog",
            None,
            "met",
            value_numeric=Decimal(1),
            evidence_at=datetime(2026, 11, 2, 9, 15, 30, 250000),
            near_flip=True,
        ),
    },
    {**P2, **_criterion(2, "ecog", "", "unknown", next_step="Record ECOG", missing_item="ECOG")},
    {**P3, **_criterion(2, "ecog", "Performance status", "met")},
]


def _expected(*, opted_out: str | None = None) -> list[Entry]:
    """The same worklist, by hand, as entries in the worklist's order: dates as ISO text,
    decimals as float, booleans and counts as Entry holds them, a criterion without a label
    by its id."""
    extra_anc = {
        "comparator": ">=",
        "margin": 0.4,
        "near_flip": False,
        "evidence_date": "2026-11-01",
        "valid_until": "2026-12-01",
        "missing_item": None,
        "next_step": None,
        "evidence_note": None,
        "evidence_time": "08:30:00",
    }
    none = dict.fromkeys(extra_anc)

    def anc(label: str, status: str, **extra: object) -> Criterion:
        return Criterion(
            "anc",
            label,
            status,
            1.9,
            "10*9/L",
            1.5,
            "2026-11-01T08:30:00",
            f"anc {status}",
            {**extra_anc, **extra},
        )

    def entry(p: dict[str, Any], criteria: list[Criterion], **kw: object) -> Entry:
        fields = {k: p.get(k) for k in (*PATIENT_COLUMNS[2:], "is_new") if k != "is_new"}
        return Entry(
            **{**fields, **kw},  # type: ignore[arg-type]
            is_new_in_marts=bool(p["is_new"]),
            criteria=criteria,
        )

    entries = [
        entry(
            P1,
            [
                anc("ANC", "met"),
                Criterion(
                    "ecog",
                    "ecog",
                    "met",
                    1.0,
                    None,
                    None,
                    "2026-11-02T09:15:30.250000",
                    "ecog met",
                    {**none, "near_flip": True},
                ),
            ],
            birth_date="1960-01-02",
            n_unknown=0,
            first_eligible_on="2026-11-20",
        ),
        entry(
            P2,
            [
                anc("ANC", "met"),
                Criterion(
                    "ecog",
                    "ecog",
                    "unknown",
                    None,
                    None,
                    None,
                    None,
                    "ecog unknown",
                    {**none, "missing_item": "ECOG", "next_step": "Record ECOG"},
                ),
                Criterion(
                    "crcl", "Creatinine clearance", "met", 55.5, None, None, None, "crcl met", none
                ),
            ],
            n_unknown=2,
            first_eligible_on="2026-11-20",
            rescreen_by="2026-12-05",
        ),
        entry(
            P3,
            [
                anc("anc", "met"),
                Criterion(
                    "ecog", "Performance status", "met", None, None, None, None, "ecog met", none
                ),
            ],
            birth_date="1960-01-02",
            n_unknown=0,
            first_eligible_on="2026-11-20",
        ),
        entry(
            P4,
            [anc("ANC", "not_met", evidence_note="repeat lab")],
            birth_date="1960-01-02",
            n_unknown=0,
        ),
    ]
    return [e for e in entries if e.mrn != opted_out]


def _load(url: str, engine: str) -> None:
    """restricted.worklist with ROWS, and the tables the worklist step reads beside it."""
    with Warehouse.connect(url) as wh:
        for schema in ("restricted", "marts"):
            wh.ensure_schema(schema)
        types = ", ".join(
            f"{c} {TYPES.get(c, ('varchar', 'text'))[engine == 'postgres']}"
            for c in WORKLIST_COLUMNS
        )
        wh.execute(f"create table restricted.worklist ({types})")
        marks = ", ".join([wh.param] * len(WORKLIST_COLUMNS))
        for row in ROWS:
            wh.execute(
                f"insert into restricted.worklist values ({marks})",
                [row.get(c) for c in WORKLIST_COLUMNS],
            )
        wh.execute(
            "create table restricted.patient_keys as "
            "select distinct patient_key, mrn from restricted.worklist"
        )
        wh.execute(
            "create table marts.eligible_candidates as select distinct trial_id, cohort_id, "
            "patient_key from restricted.worklist where not is_no_longer_eligible"
        )


@pytest.fixture(
    params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def worklist_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A warehouse holding the hand-made restricted.worklist: (URL, engine)."""
    engine: str = request.param
    url = (
        str(tmp_path / "wh.duckdb")
        if engine == "duckdb"
        else request.getfixturevalue("pg_database")
    )
    _load(url, engine)
    return url, engine


def _tables(path: Path) -> dict[str, list[tuple[tuple[str, object], ...]]]:
    """A snapshot's tables row by row, each value with its SQLite type (1 is not 1.0)."""
    con = sqlite3.connect(path)
    try:
        return {
            t: [
                tuple((type(v).__name__, v) for v in row)
                for row in con.execute(f"select * from {t} order by 1, 2")
            ]
            for t in ("entries", "criteria", "meta")
        }
    finally:
        con.close()


META = {
    "run_id": "run-1",
    "screening_date": "2026-11-20",
    "built_at": "2026-11-20T03:00:00",
    "opted_out": {},
    "opt_out_source": "",
}


@pytest.mark.parametrize("rows", [1, 3, 1000])  # an entry spans frames; one frame
def test_the_snapshot_from_the_warehouse_has_the_rows_entries_give(
    worklist_url: tuple[str, str], tmp_path: Path, rows: int
) -> None:
    url, _ = worklist_url
    with Warehouse.connect(url) as wh:
        extra, frames = read_frames(wh, rows)
        assert snapshot.write_frames(tmp_path / "frames.sqlite", frames, extra, META) == (4, 8)
    assert extra == [*CRITERION_DETAIL, *LATER]
    snapshot.write_entries(tmp_path / "entries.sqlite", _expected(), extra, META)
    assert _tables(tmp_path / "frames.sqlite") == _tables(tmp_path / "entries.sqlite")
    with Snapshot(tmp_path / "frames.sqlite") as snap:
        assert snap.load().entries == _expected()


def test_the_worklist_step_writes_the_snapshot_without_opted_out_patients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "wh.duckdb")
    _load(url, "duckdb")
    opt_outs = tmp_path / "opt_outs.csv"
    opt_outs.write_text("mrn\nMRN003\n", encoding="utf-8")
    monkeypatch.setenv("TRIALSCREEN_WORKLIST_DIR", str(tmp_path / "worklist"))
    monkeypatch.setenv("TRIALSCREEN_OPT_OUT_FILE", str(opt_outs))
    page = write_worklist(url, "run-1", tmp_path / "reports")
    with Snapshot(page.parent / "worklist.sqlite") as snap:
        assert snap.opted_out == {"axiom/safety_run_in": 1}
        meta = {
            "run_id": "run-1",
            "screening_date": "2026-11-20",
            "built_at": snap.built_at,
            "opted_out": snap.opted_out,
            "opt_out_source": str(opt_outs),
        }
    snapshot.write_entries(
        tmp_path / "entries.sqlite", _expected(opted_out="MRN003"), snap.extra_columns, meta
    )
    assert _tables(page.parent / "worklist.sqlite") == _tables(tmp_path / "entries.sqlite")
