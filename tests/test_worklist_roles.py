"""The worklist's roles on PostgreSQL (issue 12 item 6): the coordinator reads the worklist and
writes decisions (schema ``decisions``), the run merges them as the transformer, and the
analyst reads neither identities nor decisions' free text, only the accrual counts.

The tables dbt would build are made by hand as the transformer (the columns the worklist step
reads), as tests/test_roles.py does; the worklist step itself runs for real as the
transformer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from trialscreen.roles import ANALYST, COORDINATOR, TRANSFORMER, ensure_roles
from trialscreen.worklist import Decision, DecisionStore, Snapshot, mark, write_worklist
from trialscreen.worklist.build import CRITERION_COLUMNS, CRITERION_DETAIL, PATIENT_COLUMNS

pytestmark = pytest.mark.postgres

DB = "t_worklist_roles"
PASSWORDS = {
    TRANSFORMER: "transformer-wl-pw",
    ANALYST: "analyst-wl-pw",
    COORDINATOR: "coordinator-wl-pw",
    "trialscreen_loader": "loader-wl-pw",
}


def _type(column: str) -> str:
    dates = ("screening_date", "birth_date", "first_eligible_on", "rescreen_by")
    if column in (*dates, "evidence_date", "valid_until"):
        return "date"
    if column == "evidence_at":
        return "timestamp"
    if column in ("is_new", "is_no_longer_eligible", "near_flip"):
        return "boolean"
    if column in ("age_years", "n_unknown", "criterion_ordinal"):
        return "integer"
    if column in ("value_numeric", "threshold", "uln", "margin"):
        return "double precision"
    return "text"


@pytest.fixture(scope="module")
def cluster(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        for role, password in PASSWORDS.items():
            mp.setenv(f"{role.upper()}_PASSWORD", password)
        con = psycopg2.connect(pg_cluster.url)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f"drop database if exists {DB}")
            cur.execute(f"create database {DB}")
        con.close()
        ensure_roles(pg_cluster.url_for(DB))
        urls = {r: pg_cluster.url_for(DB, r, p) for r, p in PASSWORDS.items()}
        columns = PATIENT_COLUMNS + CRITERION_COLUMNS + CRITERION_DETAIL
        values = {
            "run_id": "'run-pg'",
            "trial_id": "'axiom'",
            "cohort_id": "'asps'",
            "patient_key": "'00000000000000a1'",
            "mrn": "'MRN-PG-1'",
            "family_name": "'Doe'",
            "given_name": "'Jane'",
            "candidate_status": "'missing_data'",
            "n_unknown": "1",
            "is_new": "true",
            "is_no_longer_eligible": "false",
            "criterion_id": "'ecog'",
            "criterion_ordinal": "1",
            "criterion_label": "'Performance status'",
            "criterion_status": "'unknown'",
            "reason": "'no ECOG in 30 days'",
            "next_step": "'Record ECOG'",
        }
        select = ", ".join(f"cast({values.get(c, 'null')} as {_type(c)}) as {c}" for c in columns)
        t = psycopg2.connect(urls[TRANSFORMER])
        t.autocommit = True
        with t.cursor() as cur:
            cur.execute(f"create table restricted.worklist as select {select}")
            cur.execute(
                "create table restricted.patient_keys as "
                "select 'MRN-PG-1'::text as mrn, '00000000000000a1'::text as patient_key"
            )
            cur.execute(
                "create table marts.eligible_candidates as select 'axiom'::text as trial_id, "
                "'asps'::text as cohort_id, '00000000000000a1'::text as patient_key"
            )
        t.close()
        wl_dir = tmp_path_factory.mktemp("wl") / "worklist"
        mp.setenv("TRIALSCREEN_WORKLIST_DIR", str(wl_dir))
        mp.delenv("TRIALSCREEN_OPT_OUT_FILE", raising=False)
        yield {"urls": urls, "dir": wl_dir, "admin": pg_cluster.url_for(DB)}


def _connect(cluster: dict[str, Any], role: str) -> Any:
    con = psycopg2.connect(cluster["urls"][role])
    con.autocommit = True
    return con


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    with con.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def test_coordinator_writes_decisions_the_run_merges_and_analyst_reads_only_counts(
    cluster: dict[str, Any],
) -> None:
    # night 1: the run writes the page (no decisions yet)
    write_worklist(cluster["urls"][TRANSFORMER], "run-pg", Path(cluster["dir"]).parent)
    snapshot = Snapshot(cluster["dir"] / "run-pg" / "worklist.sqlite")
    assert [e.mrn for e in snapshot.load().entries] == ["MRN-PG-1"]
    # the coordinator records a decision in the warehouse's decisions schema, as themself
    with snapshot, DecisionStore(cluster["urls"][COORDINATOR]) as store:
        mark(
            store,
            snapshot,
            [Decision("axiom", "asps", "MRN-PG-1", "screen_failed", reason="on another study")],
        )
        (decision,) = store.decisions()
    assert decision.recorded_by.endswith(f"({COORDINATOR})")
    # night 2: the run (transformer) reads them and merges
    write_worklist(cluster["urls"][TRANSFORMER], "run-pg-2", Path(cluster["dir"]).parent)
    page = (cluster["dir"] / "run-pg-2" / "worklist.html").read_text(encoding="utf-8")
    assert "on another study" in page and "MRN-PG-1" in page

    coordinator = _connect(cluster, COORDINATOR)
    assert _rows(coordinator, "select mrn from restricted.worklist") == [("MRN-PG-1",)]
    assert _rows(coordinator, "select outcome from restricted.worklist_decisions") == [
        ("screen_failed",)
    ]
    assert _rows(coordinator, "select outcome, patients from marts.worklist_accrual") == [
        ("screen_failed", 1)
    ]

    analyst = _connect(cluster, ANALYST)
    assert _rows(analyst, "select outcome, patients from marts.worklist_accrual") == [
        ("screen_failed", 1)
    ]
    for table in (
        "restricted.worklist",
        "restricted.worklist_decisions",
        "decisions.worklist_decisions",
        "decisions.worklist_exports",
    ):
        with analyst.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(f"select * from {table}")
    with analyst.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute(
            "insert into decisions.worklist_decisions (decision_id, trial_id, cohort_id, mrn, "
            "outcome, recorded_by, recorded_at) values ('x', 'a', 'b', 'c', 'reviewed', 'me', "
            "now())"
        )


def test_only_the_coordinator_writes_decisions(cluster: dict[str, Any]) -> None:
    with DecisionStore(cluster["urls"][COORDINATOR]):
        pass  # the tables exist
    transformer = _connect(cluster, TRANSFORMER)
    _rows(transformer, "select count(*) from decisions.worklist_decisions")  # reads
    with transformer.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("delete from decisions.worklist_decisions")
    ensure_roles(cluster["admin"])  # the nightly init runs it again: the grants stay
    _rows(_connect(cluster, TRANSFORMER), "select count(*) from decisions.worklist_decisions")
    with (
        _connect(cluster, ANALYST).cursor() as cur,
        pytest.raises(psycopg2.errors.InsufficientPrivilege),
    ):
        cur.execute("select count(*) from decisions.worklist_decisions")
