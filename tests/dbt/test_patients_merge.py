"""Issue 11 item 4 (patients) and issue 9 item 7 (identity): demographics merged field by
field across feeds and deliveries, patient merges, test patients and the screened population
(docs/decisions.md "Demographics merged field by field", "Patient merges and test patients").

One warehouse built once per module from raw rows as the parsers land them: the baseline
patients of test_criteria_scenarios with their patient record moved to the feed a scenario
needs, and deliveries loaded at different times.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import duckdb
import polars as pl
import pytest

from tests.dbt.test_criteria_scenarios import KEY, RUN_ID, _run_dbt, evaluation
from tests.dbt.test_issue11_scenarios import Scenarios, _sql_type
from trialscreen import pseudonym, schema
from trialscreen.trial import load_trial, trial_tables, write_trial_tables_duckdb

LOAD_1 = datetime(2026, 10, 1, 3, 0)
LOAD_2 = datetime(2026, 11, 1, 3, 0)
OLD = "1960-03-15"  # 66 on the screening date (2026-11-02)
YOUNG = "1999-05-01"  # 27


class Patients(Scenarios):
    """Scenario rows with patient records in any feed, each with its own load time."""

    def demographics(
        self, feed: str, mrn: str, birth: str | None, sex: str | None,
        loaded_at: datetime = LOAD_1, record_id: str | None = None,
    ) -> None:  # fmt: skip
        n = len(self.extra.get((feed, "patients"), [])) + 1
        rid = record_id or f"{feed}-{mrn}-{n}"
        self.add(feed, "patients", {
            "source_file": f"{feed}/patients-{loaded_at:%m%d}", "source_position": n,
            "record_id": rid, "record_hash": f"h-{rid}-{n}", "patient_ref": f"ref-{mrn}",
            "mrn": mrn, "family_name": f"Family{mrn}", "given_name": "Given",
            "birth_date": date.fromisoformat(birth) if birth else None, "sex": sex,
            "loaded_at": loaded_at,
        })  # fmt: skip

    def merge(self, feed: str, retired: str, surviving: str, event: str = "csv") -> None:
        n = len(self.extra.get((feed, "patient_merges"), [])) + 1
        self.add(feed, "patient_merges", {
            "source_file": f"{feed}/merges", "source_position": n,
            "record_id": f"merge-{retired}", "record_hash": f"h-merge-{retired}",
            "patient_ref": surviving, "mrn": surviving, "prior_mrn": retired,
            "event_type": event, "merged_at": datetime(2026, 10, 15, 9, 0),
        })  # fmt: skip

    def moved(self, mrn: str) -> None:
        """The baseline's CSV patient row left out: the scenario sends its own."""
        self.rows["patients"] = [r for r in self.rows["patients"] if r["mrn"] != mrn]


def build() -> Patients:
    s = Patients()
    # FHIR birth date and sex, a later HL7 message with both blank: both kept
    s.baseline("KEEP")
    s.moved("KEEP")
    s.demographics("fhir", "KEEP", OLD, "female", LOAD_1)
    s.demographics("hl7", "KEEP", None, None, LOAD_2)
    # a later HL7 birth date for an existing MRN: never silently a new age
    s.baseline("CONFLICT")
    s.moved("CONFLICT")
    s.demographics("fhir", "CONFLICT", OLD, "male", LOAD_1)
    s.demographics("hl7", "CONFLICT", YOUNG, "M", LOAD_2)
    # the same feed corrects its own birth date: the later value wins, no conflict
    s.baseline("SAMEFIX")
    s.moved("SAMEFIX")
    s.demographics("csv", "SAMEFIX", YOUNG, "male", LOAD_1, record_id="SAMEFIX")
    s.demographics("csv", "SAMEFIX", OLD, "male", LOAD_2, record_id="SAMEFIX")
    # feeds disagree on sex: unknown, flagged
    s.baseline("SEXCONF")
    s.moved("SEXCONF")
    s.demographics("fhir", "SEXCONF", OLD, "female", LOAD_1)
    s.demographics("csv", "SEXCONF", OLD, "male", LOAD_2)
    # two feeds agreeing: no conflict
    s.baseline("AGREE")
    s.moved("AGREE")
    s.demographics("fhir", "AGREE", OLD, "female", LOAD_1)
    s.demographics("hl7", "AGREE", OLD, "F", LOAD_2)
    # a merge: the retired MRN's records decide the surviving patient's criteria (HL7 A40)
    s.baseline("MERGED", anc=True)
    s.patient("MERGEDOLD", "1986-05-10")
    s.obs("MERGEDOLD", "751-8", 0.5, "10*9/L", "2026-10-30")
    s.merge("hl7", "MERGEDOLD", "MERGED", "A40")
    # a chain A -> B (CSV) and B -> C (HL7): A's records count for C
    s.baseline("CHAINC", platelets=True)
    s.patient("CHAINA", "1986-05-10")
    s.obs("CHAINA", "777-3", 50, "10*9/L", "2026-10-30")
    s.patient("CHAINB", "1986-05-10")
    s.merge("csv", "CHAINA", "CHAINB")
    s.merge("hl7", "CHAINB", "CHAINC", "A18")
    # never screened: a test patient (seed test_patients, prefix ZZTEST), a death, not born
    s.baseline("ZZTEST0001")
    s.baseline("DEAD")
    s.rows["patients"][-1]["deceased_at"] = datetime(2026, 9, 1, 12, 0)
    s.baseline("UNBORN", birth="2026-11-05")  # a past date re-run after the birth was landed
    s.rows["patients"][-1]["loaded_at"] = datetime(2026, 11, 10, 3, 0)
    return s


def _mrns(s: Patients) -> set[str]:
    rows = [r for rs in s.rows.values() for r in rs] + [r for rs in s.extra.values() for r in rs]
    return {str(r[k]) for r in rows for k in ("mrn", "prior_mrn") if r.get(k)}


def _create_raw(con: duckdb.DuckDBPyConnection, s: Patients) -> None:
    con.execute("create schema if not exists raw")
    for feed in schema.FEEDS:
        for entity in schema.RAW_TABLES:
            columns = {**schema.TABLE_COLUMNS[entity], **schema.LOAD_COLUMNS}
            ddl = ", ".join(f"{n} {_sql_type(t)}" for n, t in columns.items())
            table = f"raw.{schema.raw_table(feed, entity)}"
            con.execute(f"create or replace table {table} ({ddl})")
            rows = list(s.extra.get((feed, entity), []))
            if feed == "csv" and entity in s.rows:
                rows = s.rows[entity] + rows
            if not rows:
                continue
            loaded = [r.get("loaded_at") or LOAD_1 for r in rows]
            frame = schema.conform(entity, pl.DataFrame(rows, infer_schema_length=None))
            frame = frame.with_columns(
                pl.lit(RUN_ID).alias("run_id"),
                pl.Series("loaded_at", loaded, dtype=schema.TS),
                pl.lit(1, dtype=pl.Int64).alias("load_id"),
            )
            arrow = frame.to_arrow()  # noqa: F841 - read by name below
            con.execute(f"insert into {table} by name select * from arrow")
    con.execute("create schema if not exists restricted")
    con.execute("create or replace table restricted.patient_keys (mrn varchar, patient_key text)")
    for mrn in sorted(_mrns(s)):
        con.execute(
            "insert into restricted.patient_keys values (?, ?)",
            [mrn, pseudonym.patient_key(mrn, KEY)],
        )


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("patients")
    db_path = tmp / "patients.duckdb"
    con = duckdb.connect(str(db_path))
    try:
        _create_raw(con, build())
        write_trial_tables_duckdb(con, trial_tables([load_trial("axiom")]))
    finally:
        con.close()
    _run_dbt(db_path, tmp)
    con = duckdb.connect(str(db_path), read_only=True)
    yield con
    con.close()


def _patient(wh: duckdb.DuckDBPyConnection, mrn: str) -> dict[str, Any]:
    cursor = wh.execute("select * from intermediate.int_patients where patient_mrn = ?", [mrn])
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, (mrn, rows)
    return dict(zip(names, rows[0], strict=True))


def _conflicts(wh: duckdb.DuckDBPyConnection, mrn: str) -> list[tuple[Any, ...]]:
    return wh.execute(
        "select field, value_count, feeds from marts.dq_patient_conflicts "
        "where patient_key = ? order by field",
        [pseudonym.patient_key(mrn, KEY)],
    ).fetchall()


# ------------------------------------------------------------------ demographics


def test_later_blank_keeps_fhir_birth_date_and_sex(wh):
    patient = _patient(wh, "KEEP")
    assert (str(patient["birth_date"]), patient["sex"]) == (OLD, "female")
    age = evaluation(wh, "KEEP", "age")
    assert (age["status"], age["value_numeric"]) == ("met", 66)
    assert _conflicts(wh, "KEEP") == []


def test_birth_date_from_another_feed_is_flagged_not_applied(wh):
    age = evaluation(wh, "CONFLICT", "age")
    assert age["status"] == "unknown"
    assert age["value_numeric"] is None  # neither 66 nor 27
    assert age["reason"] == (
        "Birth date differs between the FHIR and HL7 feeds: confirm the birth date"
    )
    assert _conflicts(wh, "CONFLICT") == [("birth_date", 2, "FHIR and HL7")]
    assert _patient(wh, "CONFLICT")["sex"] == "male"  # M and male agree


def test_same_feed_corrects_its_own_birth_date(wh):
    age = evaluation(wh, "SAMEFIX", "age")
    assert (age["status"], age["value_numeric"]) == ("met", 66)
    assert _conflicts(wh, "SAMEFIX") == []


def test_sex_conflict_is_unknown_and_flagged(wh):
    assert _patient(wh, "SEXCONF")["sex"] == "unknown"
    assert _conflicts(wh, "SEXCONF") == [("sex", 2, "FHIR and CSV")]
    assert evaluation(wh, "SEXCONF", "age")["status"] == "met"


def test_agreeing_feeds_are_no_conflict(wh):
    patient = _patient(wh, "AGREE")
    assert (str(patient["birth_date"]), patient["sex"]) == (OLD, "female")
    assert _conflicts(wh, "AGREE") == []


def test_conflict_mart_carries_no_value(wh):
    columns = [r[0] for r in wh.execute("describe marts.dq_patient_conflicts").fetchall()]
    assert columns == ["run_id", "patient_key", "field", "value_count", "feeds"]
    text = " ".join(str(v) for row in wh.execute(
        "select * from marts.dq_patient_conflicts").fetchall() for v in row)  # fmt: skip
    assert "1960" not in text and "1999" not in text and "CONFLICT" not in text


# ------------------------------------------------------------------ merges and exclusions


def _screened(wh: duckdb.DuckDBPyConnection, mrn: str) -> bool:
    key = pseudonym.patient_key(mrn, KEY)
    sql = "select count(*) from marts.criterion_evaluations where patient_key = ?"
    return bool(wh.execute(sql, [key]).fetchone()[0])


def test_retired_mrn_records_decide_the_surviving_patient(wh):
    anc = evaluation(wh, "MERGED", "anc")
    assert anc["status"] == "not_met", anc["reason"]  # the ANC sent under the retired MRN
    assert evaluation(wh, "MERGED", "age")["status"] == "met"
    assert not _screened(wh, "MERGEDOLD")


def test_merge_chain_resolves_to_the_final_survivor(wh):
    sql = "select retired_mrn, surviving_mrn from intermediate.int_patient_merges"
    merges = dict(wh.execute(sql).fetchall())
    assert merges == {"MERGEDOLD": "MERGED", "CHAINA": "CHAINC", "CHAINB": "CHAINC"}
    assert evaluation(wh, "CHAINC", "platelets")["status"] == "not_met"
    assert not _screened(wh, "CHAINA") and not _screened(wh, "CHAINB")


def test_test_patient_deceased_and_unborn_are_not_screened(wh):
    assert _screened(wh, "KEEP")
    for mrn in ("ZZTEST0001", "DEAD", "UNBORN"):
        assert not _screened(wh, mrn), mrn


def test_population_counts(wh):
    cursor = wh.execute("select * from marts.screening_population where trial_id = 'axiom'")
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone(), strict=True))
    screened = wh.execute(
        "select count(distinct patient_key) from marts.criterion_evaluations"
        " where trial_id = 'axiom'"
    ).fetchone()[0]
    assert row["patients_screened"] == screened
    assert (row["merged_away"], row["test_patients"], row["deceased"], row["not_born"]) == (
        3, 1, 1, 1,
    )  # fmt: skip
    excluded = row["merged_away"] + row["test_patients"] + row["deceased"] + row["not_born"]
    assert row["mrns_on_record"] == screened + excluded
