"""Criterion rules at their edges (docs/clinical-rules.md#axiom), on one warehouse built once per
session.

The fixture writes hand-made raw rows (the CSV feed's raw tables, exactly the columns of
``schema.RAW_COLUMNS``) for a small set of scenario patients, the pseudonym keys and the
``config.*`` tables of AXIOM plus the made-up second trial, then runs one ``dbt build``.
Each test reads ``marts.criterion_evaluations`` for one patient and one criterion.

Screening date 2026-11-02. A baseline patient meets every AXIOM data criterion; each
scenario patient differs from it in one respect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from trialscreen import pseudonym, schema
from trialscreen.trial import load_trial, trial_tables, write_trial_tables_duckdb

REPO = Path(__file__).resolve().parents[2]
PROJECT_DIR = REPO / "dbt_project"
SCREENING_DATE = date(2026, 11, 2)
RUN_ID = "scenario-run-1"
KEY = "test-key-not-a-secret"

_SQL_TYPES = {
    pl.String: "varchar",
    pl.Int64: "bigint",
    pl.Int32: "integer",
    pl.Float64: "double",
    pl.Date: "date",
    pl.Datetime: "timestamp",
}


def _sql_type(dtype: pl.DataType) -> str:
    for base, sql in _SQL_TYPES.items():
        if dtype == base or isinstance(dtype, base):
            return sql
    raise TypeError(dtype)


# ------------------------------------------------------------------ scenario rows


def ts(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour)


class Scenario:
    """Raw CSV-feed rows for the scenario patients."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {e: [] for e in schema.ENTITIES}
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:05d}"

    def patient(self, mrn: str, birth: str, sex: str = "male") -> None:
        self.rows["patients"].append(
            {
                "source_file": "csv/patients.csv",
                "source_position": len(self.rows["patients"]) + 1,
                "record_id": mrn,
                "record_hash": f"h-{mrn}",
                "patient_ref": mrn,
                "mrn": mrn,
                "family_name": f"Family{mrn}",
                "given_name": "Given",
                "birth_date": date.fromisoformat(birth),
                "sex": sex,
            }
        )

    def obs(
        self,
        mrn: str,
        loinc: str,
        value: float | None,
        unit: str | None,
        day: str,
        *,
        comparator: str | None = None,
        ref_high: float | None = None,
        hour: int = 9,
        method: str | None = None,
        body_site: str | None = None,
        value_code: str | None = None,
        category: str = "laboratory",
        local_code: str | None = None,
    ) -> None:
        rid = self._id("obs")
        self.rows["observations"].append(
            {
                "source_file": "csv/lab_results.csv",
                "source_position": self._n,
                "record_id": rid,
                "record_hash": f"h-{rid}",
                "patient_ref": mrn,
                "mrn": mrn,
                "category": category,
                "loinc": loinc or None,
                "local_code": local_code,
                "value_type": "coded" if value_code else "quantity",
                "value_numeric": value,
                "value_comparator": comparator,
                "value_unit": unit,
                "value_code": value_code,
                "value_code_system": "http://snomed.info/sct" if value_code else None,
                "ref_high": ref_high,
                "status": "final",
                "effective_at": ts(day, hour),
                "issued_at": ts(day, hour + 2),
                "order_id": rid,
                "method_code": method,
                "method_system": "http://dicom.nema.org/resources/ontology/DCM" if method else None,
                "body_site_code": body_site,
                "body_site_system": "http://snomed.info/sct" if body_site else None,
            }
        )

    def condition(self, mrn: str, system: str, code: str, display: str, onset: str) -> None:
        rid = self._id("cond")
        self.rows["conditions"].append(
            {
                "source_file": "csv/conditions.csv",
                "source_position": self._n,
                "record_id": rid,
                "record_hash": f"h-{rid}",
                "patient_ref": mrn,
                "mrn": mrn,
                "code_system": system,
                "code": code,
                "code_display": display,
                "clinical_status": "active",
                "verification_status": "confirmed",
                "onset_at": ts(onset),
                "recorded_at": ts(onset),
            }
        )

    def medication(self, mrn: str, atc: str, display: str, start: str, status: str) -> None:
        rid = self._id("med")
        self.rows["medications"].append(
            {
                "source_file": "csv/medications.csv",
                "source_position": self._n,
                "record_id": rid,
                "record_hash": f"h-{rid}",
                "patient_ref": mrn,
                "mrn": mrn,
                "resource_type": "MedicationRequest",
                "code_system": "atc",
                "code": atc,
                "code_display": display,
                "status": status,
                "start_at": ts(start),
            }
        )

    # -------------------------------------------------------------- the baseline patient

    def baseline(
        self, mrn: str, birth: str = "1986-05-10", sex: str = "male", **skip: bool
    ) -> None:
        """A patient meeting every AXIOM data criterion; skip=True leaves an item out."""
        self.patient(mrn, birth, sex)
        labs = {
            "anc": ("751-8", 3.0, "10*9/L", None),
            "platelets": ("777-3", 200, "10*9/L", None),
            "hemoglobin": ("718-7", 13.0, "g/dL", None),
            "bilirubin": ("1975-2", 0.8, "mg/dL", 1.2),
            "ast": ("1920-8", 25, "U/L", 40),
            "alt": ("1742-6", 25, "U/L", 40),
            "creatinine": ("2160-0", 1.0, "mg/dL", 1.2),
            "albumin": ("1751-7", 4.0, "g/dL", None),
            "sodium": ("2951-2", 140, "mmol/L", None),
        }
        for name, (loinc, value, unit, ref_high) in labs.items():
            if not skip.get(name):
                self.obs(mrn, loinc, value, unit, "2026-10-30", ref_high=ref_high)
        if not skip.get("weight"):
            self.obs(mrn, "29463-7", 80, "kg", "2026-10-30", category="vital-signs")
        if not skip.get("height"):
            self.obs(mrn, "8302-2", 180, "cm", "2025-01-15", category="vital-signs")
        if not skip.get("ecog"):
            self.obs(mrn, "89247-1", 1, None, "2026-10-28", category="survey")
        if not skip.get("tumor"):
            self.obs(mrn, "21889-1", 25, "mm", "2026-10-20", method="CT", category="imaging")
        self.condition(mrn, "icd-o-3", "9581/3", "Alveolar soft part sarcoma", "2025-03-01")
        self.condition(mrn, "icd-10-cm", "C49.9", "Malignant neoplasm of soft tissue", "2025-03-01")
        self.condition(
            mrn, "icd-10-cm", "C78.00", "Secondary malignant neoplasm of lung", "2025-06-01"
        )


def build_scenarios() -> Scenario:
    s = Scenario()
    s.baseline("BASE")
    # age around a birthday on the screening date
    s.baseline("AGE12", birth="2014-11-02")
    s.baseline("AGE11", birth="2014-11-03")
    # bilirubin 2 x ULN (ULN 1.2 from the result), with and without Gilbert syndrome
    s.baseline("BILI", bilirubin=True)
    s.obs("BILI", "1975-2", 2.4, "mg/dL", "2026-10-30", ref_high=1.2)
    s.baseline("BILIGIL", bilirubin=True)
    s.obs("BILIGIL", "1975-2", 2.4, "mg/dL", "2026-10-30", ref_high=1.2)
    s.condition("BILIGIL", "icd-10-cm", "E80.4", "Gilbert syndrome", "2010-01-01")
    # bilirubin with an implausible result ULN (US Core example range 2.0-7.0): institutional
    s.baseline("BILIUS", bilirubin=True)
    s.obs("BILIUS", "1975-2", 2.4, "mg/dL", "2026-10-30", ref_high=7.0)
    # AST 4 x ULN, with and without liver metastases
    s.baseline("AST", ast=True)
    s.obs("AST", "1920-8", 160, "U/L", "2026-10-30", ref_high=40)
    s.baseline("ASTLIV", ast=True)
    s.obs("ASTLIV", "1920-8", 160, "U/L", "2026-10-30", ref_high=40)
    s.condition(
        "ASTLIV", "icd-10-cm", "C78.7", "Secondary malignant neoplasm of liver", "2026-01-01"
    )
    # creatinine 1.67 x ULN: rescued by CG (male 40 y, 80 kg, 180 cm: 55.6 mL/min, 48 /1.73 m2)
    s.baseline("CRRESCUE", birth="1986-05-10", creatinine=True)
    s.obs("CRRESCUE", "2160-0", 2.0, "mg/dL", "2026-10-30", ref_high=1.2)
    # creatinine 4.0 (3.3 x ULN), 70 y, 60 kg, 170 cm: CG 14.6 mL/min -> not rescued
    s.baseline("CRFAIL", birth="1956-01-01", creatinine=True, weight=True, height=True)
    s.obs("CRFAIL", "2160-0", 4.0, "mg/dL", "2026-10-30", ref_high=1.2)
    s.obs("CRFAIL", "29463-7", 60, "kg", "2026-10-30", category="vital-signs")
    s.obs("CRFAIL", "8302-2", 170, "cm", "2020-01-01", category="vital-signs")
    # creatinine 2.0 and no height: normalized CG unknown -> unknown
    s.baseline("CRNOHT", creatinine=True, height=True)
    s.obs("CRNOHT", "2160-0", 2.0, "mg/dL", "2026-10-30", ref_high=1.2)
    # ECOG 2 and KPS 60 on the same day
    s.baseline("PSCONF", ecog=True)
    s.obs("PSCONF", "89247-1", 2, None, "2026-10-29", category="survey")
    s.obs("PSCONF", "89243-0", 60, None, "2026-10-29", hour=11, category="survey")
    # ANC comparator results
    s.baseline("ANCLT2", anc=True)
    s.obs("ANCLT2", "751-8", 2.0, "10*9/L", "2026-10-30", comparator="<")
    s.baseline("ANCGT5", anc=True)
    s.obs("ANCGT5", "751-8", 5.0, "10*9/L", "2026-10-30", comparator=">")
    s.baseline("ANCLT05", anc=True)
    s.obs("ANCLT05", "751-8", 0.5, "10*9/L", "2026-10-30", comparator="<")
    # latest ANC has an unmappable unit; an older usable one must not be used
    s.baseline("ANCUNIT", anc=True)
    s.obs("ANCUNIT", "751-8", 2.0, "10*9/L", "2026-10-20")
    s.obs("ANCUNIT", "751-8", 2.1, "furlongs/fortnight", "2026-11-01")
    # ANC 1.2: met in AXIOM (>= 1.0), not met in the second trial (>= 1.5)
    s.baseline("ANC12", anc=True)
    s.obs("ANC12", "751-8", 1.2, "10*9/L", "2026-10-30")
    # HIV on ART with "<20 copies/mL" in the window, and a stale one
    for mrn, day in (("HIVOK", "2026-10-25"), ("HIVSTALE", "2026-09-01")):
        s.baseline(mrn)
        s.condition(mrn, "icd-10-cm", "B20", "HIV disease", "2015-01-01")
        s.medication(mrn, "J05AJ03", "dolutegravir", "2016-01-01", "active")
        s.obs(mrn, "20447-9", 20, "copies/mL", day, comparator="<")
    # prior ICI without recorded progression; and with progression after it
    s.baseline("ICI")
    s.medication("ICI", "L01FF02", "pembrolizumab", "2025-01-01", "completed")
    s.baseline("ICIPROG")
    s.medication("ICIPROG", "L01FF02", "pembrolizumab", "2025-01-01", "completed")
    s.obs("ICIPROG", "97509-4", None, None, "2025-09-01", value_code="271299001", category="exam")
    # tumor measured by chest x-ray 15 mm (< 20) and one without a method
    s.baseline("TUMXR", tumor=True)
    s.obs("TUMXR", "21889-1", 15, "mm", "2026-10-20", method="DX", category="imaging")
    s.baseline("TUMNOM", tumor=True)
    s.obs("TUMNOM", "21889-1", 30, "mm", "2026-10-20", category="imaging")
    # sex unknown: CG computed for both sexes (creatinine 2.0 fails ULN; both sexes rescue)
    s.baseline("SEXU", sex="unknown", creatinine=True)
    s.obs("SEXU", "2160-0", 2.0, "mg/dL", "2026-10-30", ref_high=1.2)
    # a 14-year-old assessed on the Lansky scale (CSV local code LANSKY)
    s.baseline("LANSKY", birth="2012-06-01", ecog=True)
    s.obs("LANSKY", "", 80, None, "2026-10-29", category="survey", local_code="LANSKY")
    # a 15 mm lesion with no imaging method: RECIST cannot decide (10-20 mm)
    s.baseline("TUMUND", tumor=True)
    s.obs("TUMUND", "21889-1", 15, "mm", "2026-10-20", category="imaging")
    # WBC (an analyte only the second trial judges, >= 3.0): 4.2 met, 3.1 met within 10 %
    s.baseline("WBC")
    s.obs("WBC", "6690-2", 4.2, "10*9/L", "2026-10-30")
    s.baseline("WBCNEAR")
    s.obs("WBCNEAR", "6690-2", 3.1, "10*9/L", "2026-10-25")
    # dysphagia coded: named in the swallow_pills reason
    s.baseline("DYSPH")
    s.condition("DYSPH", "icd-10-cm", "R13.10", "Dysphagia", "2026-09-01")
    return s


def _create_raw_tables(con: duckdb.DuckDBPyConnection, scenario: Scenario) -> None:
    con.execute("create schema if not exists raw")
    loaded = datetime(2026, 11, 2, 3, 0)
    for feed in schema.FEEDS:
        for entity in schema.RAW_TABLES:
            columns = {**schema.TABLE_COLUMNS[entity], **schema.LOAD_COLUMNS}
            ddl = ", ".join(f"{name} {_sql_type(dtype)}" for name, dtype in columns.items())
            table = f"raw.{schema.raw_table(feed, entity)}"
            con.execute(f"create or replace table {table} ({ddl})")
            if feed != "csv" or not scenario.rows.get(entity):
                continue
            frame = schema.conform(
                entity, pl.DataFrame(scenario.rows[entity], infer_schema_length=None)
            )
            frame = frame.with_columns(
                pl.lit(RUN_ID).alias("run_id"), pl.lit(loaded).cast(schema.TS).alias("loaded_at")
            )
            arrow = frame.to_arrow()  # noqa: F841 - read by name below
            con.execute(f"insert into {table} by name select * from arrow")


def _write_patient_keys(con: duckdb.DuckDBPyConnection, scenario: Scenario) -> None:
    con.execute("create schema if not exists restricted")
    con.execute(
        "create or replace table restricted.patient_keys (mrn varchar, patient_key varchar)"
    )
    for row in scenario.rows["patients"]:
        con.execute(
            "insert into restricted.patient_keys values (?, ?)",
            [row["mrn"], pseudonym.patient_key(row["mrn"], KEY)],
        )


def _run_dbt(
    db_path: Path | str, tmp: Path, run_id: str = RUN_ID, on: date = SCREENING_DATE
) -> None:
    """One `dbt build` through the pipeline's runner (trialscreen.transform.build_dbt), in a
    subprocess: dbt-duckdb keeps its connection open in-process, which would lock the file
    against the test's own connection."""
    code = (
        "import sys, datetime\n"
        "from trialscreen.transform import build_dbt\n"
        "build_dbt(sys.argv[1], datetime.date.fromisoformat(sys.argv[2]), sys.argv[3],"
        " artifacts_dir=sys.argv[4])\n"
    )
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    url = db_path if isinstance(db_path, str) else f"duckdb:///{db_path}"
    artifacts = tmp / f"dbt-{run_id}"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            url,
            on.isoformat(),
            run_id,
            str(artifacts),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"dbt build ({run_id}) failed:\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}")


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("scenarios")
    db_path = tmp / "scenarios.duckdb"
    scenario = build_scenarios()
    con = duckdb.connect(str(db_path))
    try:
        _create_raw_tables(con, scenario)
        _write_patient_keys(con, scenario)
        trials = [
            load_trial("axiom"),
            load_trial(REPO / "include" / "trials" / "examples" / "second_trial.yml"),
        ]
        write_trial_tables_duckdb(con, trial_tables(trials))
    finally:
        con.close()
    _run_dbt(db_path, tmp)
    con = duckdb.connect(str(db_path), read_only=True)
    con.execute("set variable scenario_db = ?", [str(db_path)])
    yield con
    con.close()


def evaluation(con: duckdb.DuckDBPyConnection, mrn: str, criterion: str, trial: str = "axiom",
               cohort: str | None = None) -> dict[str, Any]:  # fmt: skip
    key = pseudonym.patient_key(mrn, KEY)
    sql = """
        select * from marts.criterion_evaluations
        where patient_key = ? and criterion_id = ? and trial_id = ?
    """
    params: list[Any] = [key, criterion, trial]
    if cohort:
        sql += " and cohort_id = ?"
        params.append(cohort)
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    assert rows, f"no evaluation for {mrn}/{criterion}/{trial}"
    # a criterion shared by cohorts is evaluated once and repeated per cohort
    assert len({(r["status"], r["reason"]) for r in rows}) == 1
    return rows[0]


# ------------------------------------------------------------------ the rules


def test_baseline_patient_is_ready_for_review_in_both_cohorts(warehouse):
    key = pseudonym.patient_key("BASE", KEY)
    rows = warehouse.execute(
        "select cohort_id, candidate_status, unknown_criteria, not_met_criteria "
        "from marts.screening_results where patient_key = ? and trial_id = 'axiom' "
        "order by cohort_id",
        [key],
    ).fetchall()
    assert rows == [
        ("asps", "ready_for_review", None, None),
        ("safety_run_in", "ready_for_review", None, None),
    ]


def test_age_twelve_on_the_birthday_meets(warehouse):
    row = evaluation(warehouse, "AGE12", "age")
    assert (row["status"], row["value_numeric"]) == ("met", 12)


def test_age_eleven_the_day_before_the_twelfth_birthday_fails(warehouse):
    row = evaluation(warehouse, "AGE11", "age")
    assert (row["status"], row["value_numeric"]) == ("not_met", 11)
    assert row["evidence_source"] == "csv"


def test_bilirubin_twice_uln_fails_without_gilbert(warehouse):
    row = evaluation(warehouse, "BILI", "bilirubin")
    assert row["status"] == "not_met"
    assert (row["uln"], row["uln_source"]) == (pytest.approx(1.2), "result")
    assert row["threshold"] == pytest.approx(1.8)
    assert "2 × ULN" in row["reason"]


def test_bilirubin_twice_uln_meets_with_gilbert(warehouse):
    row = evaluation(warehouse, "BILIGIL", "bilirubin")
    assert row["status"] == "met"
    assert row["threshold"] == pytest.approx(3.6)
    assert "(Gilbert syndrome coded, E80.4)" in row["reason"]


def test_implausible_result_uln_falls_back_to_institutional(warehouse):
    row = evaluation(warehouse, "BILIUS", "bilirubin")
    assert (row["uln"], row["uln_source"], row["status"]) == (1.2, "institutional", "not_met")


def test_ast_four_times_uln_fails_without_liver_metastases(warehouse):
    row = evaluation(warehouse, "AST", "ast")
    assert row["status"] == "not_met"
    assert "4 × ULN" in row["reason"]


def test_ast_four_times_uln_meets_with_liver_metastases(warehouse):
    row = evaluation(warehouse, "ASTLIV", "ast")
    assert row["status"] == "met"
    assert row["threshold"] == pytest.approx(200)


def test_high_creatinine_rescued_by_normalized_cockcroft_gault(warehouse):
    row = evaluation(warehouse, "CRRESCUE", "renal")
    assert row["status"] == "met"
    assert row["value_unit"] == "mL/min/{1.73_m2}"
    assert row["value_numeric"] == pytest.approx(55.56 * 1.73 / 2.0, rel=1e-3)
    assert "56 mL/min" in row["reason"] and "48 mL/min/1.73 m²" in row["reason"]


def test_high_creatinine_not_rescued_when_clearance_is_low(warehouse):
    row = evaluation(warehouse, "CRFAIL", "renal")
    assert row["status"] == "not_met"


def test_high_creatinine_without_height_is_unknown(warehouse):
    row = evaluation(warehouse, "CRNOHT", "renal")
    assert row["status"] == "unknown"
    assert "no height" in row["reason"]
    # the absolute value is still computed and shown
    assert "CrCl 56 mL/min" in row["reason"]


def test_unknown_sex_decides_cockcroft_gault_when_both_sexes_agree(warehouse):
    row = evaluation(warehouse, "SEXU", "renal")
    assert row["status"] == "met"
    assert "male / female" in row["reason"]


def test_same_day_ecog_and_karnofsky_that_disagree_need_review(warehouse):
    row = evaluation(warehouse, "PSCONF", "performance_status")
    assert row["status"] == "review"
    assert "ECOG 2" in row["reason"] and "KPS 60" in row["reason"]


def test_performance_equivalents_are_display_only(warehouse):
    key = pseudonym.patient_key("PSCONF", KEY)
    row = warehouse.execute(
        "select ecog, karnofsky, ecog_equivalent, karnofsky_equivalent "
        "from marts.screening_results "
        "where patient_key = ? and trial_id = 'axiom' and cohort_id = 'asps'",
        [key],
    ).fetchone()
    assert row == (2, 60, 2, "50-60")


def test_lansky_is_judged_with_the_karnofsky_threshold(warehouse):
    row = evaluation(warehouse, "LANSKY", "performance_status")
    assert (row["status"], row["value_unit"]) == ("met", "Lansky")
    assert "Lansky 80 ≥ 70" in row["reason"]


@pytest.mark.parametrize(
    ("mrn", "status"), [("ANCLT2", "unknown"), ("ANCGT5", "met"), ("ANCLT05", "not_met")]
)
def test_anc_comparator_results_decide_only_when_they_decide(warehouse, mrn, status):
    assert evaluation(warehouse, mrn, "anc")["status"] == status


def test_latest_anc_with_unmappable_unit_is_unknown_not_the_older_value(warehouse):
    row = evaluation(warehouse, "ANCUNIT", "anc")
    assert row["status"] == "unknown"
    assert row["value_numeric"] is None
    assert "unmapped_unit" in row["reason"] and "2026-11-01" in row["reason"]


def test_hiv_on_art_with_undetectable_viral_load_in_window_meets(warehouse):
    row = evaluation(warehouse, "HIVOK", "hiv")
    assert row["status"] == "met"
    assert row["evidence_id"] is not None


def test_hiv_with_stale_viral_load_is_unknown(warehouse):
    assert evaluation(warehouse, "HIVSTALE", "hiv")["status"] == "unknown"


def test_no_hiv_on_record_meets(warehouse):
    assert evaluation(warehouse, "BASE", "hiv")["status"] == "met"


def test_prior_ici_without_progression_needs_review(warehouse):
    row = evaluation(warehouse, "ICI", "ici_refractory_progression")
    assert row["status"] == "review"
    assert "pembrolizumab" in row["reason"]


def test_prior_ici_with_progression_after_it_meets(warehouse):
    assert evaluation(warehouse, "ICIPROG", "ici_refractory_progression")["status"] == "met"


def test_no_prior_ici_meets_and_says_the_clause_does_not_apply(warehouse):
    row = evaluation(warehouse, "BASE", "ici_refractory_progression")
    assert row["status"] == "met" and "does not apply" in row["reason"]


def test_ici_clause_only_in_asps_cohort(warehouse):
    n = warehouse.execute(
        "select count(*) from marts.criterion_evaluations "
        "where criterion_id = 'ici_refractory_progression' and cohort_id <> 'asps'"
    ).fetchone()
    assert n == (0,)


def test_chest_xray_lesion_below_twenty_mm_is_not_measurable(warehouse):
    assert evaluation(warehouse, "TUMXR", "measurable_disease")["status"] == "not_met"


def test_lesion_without_method_of_thirty_mm_is_measurable_by_every_rule(warehouse):
    row = evaluation(warehouse, "TUMNOM", "measurable_disease")
    assert row["status"] == "met" and "imaging method not recorded" in row["reason"]


def test_asps_with_metastasis_meets_diagnosis(warehouse):
    row = evaluation(warehouse, "BASE", "diagnosis_asps")
    assert row["status"] == "met" and "9581/3" in row["reason"]


def test_coded_dysphagia_is_named_in_the_swallow_pills_review(warehouse):
    row = evaluation(warehouse, "DYSPH", "swallow_pills")
    assert row["status"] == "review" and "R13.10" in row["reason"]


def test_second_trial_applies_its_own_thresholds_to_the_same_data(warehouse):
    assert evaluation(warehouse, "ANC12", "anc")["status"] == "met"
    assert evaluation(warehouse, "ANC12", "anc", trial="example_second")["status"] == "not_met"
    # CG compared in absolute mL/min there: 55.6 < 60 and creatinine > 1.0 x ULN
    assert evaluation(warehouse, "CRNOHT", "renal", trial="example_second")["status"] == "not_met"
    # and the second trial has only its own criteria and cohort
    rows = warehouse.execute(
        "select distinct cohort_id, criterion_id from marts.criterion_evaluations "
        "where trial_id = 'example_second' order by criterion_id"
    ).fetchall()
    assert {r[0] for r in rows} == {"main"}
    assert [r[1] for r in rows] == sorted(
        ["age", "anc", "platelets", "wbc", "renal", "performance_status", "informed_consent"]
    )


def test_every_evaluation_has_a_reason_and_decided_rows_have_evidence(warehouse):
    empty = warehouse.execute(
        "select count(*) from marts.criterion_evaluations where reason is null or reason = ''"
    ).fetchone()
    assert empty == (0,)
    # met/not_met decided from a record carry it (absence-based decisions carry none)
    missing = warehouse.execute(
        """
        select criterion_id, reason from marts.criterion_evaluations
        where status in ('met', 'not_met') and evidence_id is null
          and criterion_id not in ('diagnosis_sts', 'diagnosis_asps', 'hiv',
                                   'ici_refractory_progression')
        """
    ).fetchall()
    assert missing == []


def test_one_row_per_patient_trial_cohort_criterion(warehouse):
    dupes = warehouse.execute(
        """
        select count(*) from (
            select trial_id, cohort_id, patient_key, criterion_id
            from marts.criterion_evaluations group by all having count(*) > 1
        )
        """
    ).fetchone()
    assert dupes == (0,)


def test_marts_carry_no_mrn_name_or_birth_date(warehouse):
    columns = warehouse.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'marts'"
    ).fetchall()
    forbidden = {"mrn", "patient_mrn", "family_name", "given_name", "birth_date"}
    assert [c for c in columns if c[1] in forbidden] == []
    contacts = warehouse.execute("select count(*) from restricted.candidate_contacts").fetchone()
    assert contacts[0] > 0


def test_funnel_counts_patients_remaining_in_criterion_order(warehouse):
    rows = warehouse.execute(
        "select ordinal, criterion_id, patients_remaining from marts.screening_funnel "
        "where trial_id = 'axiom' and cohort_id = 'asps' order by ordinal"
    ).fetchall()
    assert [r[1] for r in rows][:3] == ["age", "diagnosis_asps", "ici_refractory_progression"]
    remaining = [r[2] for r in rows]
    assert remaining == sorted(remaining, reverse=True)


def test_first_run_marks_every_candidate_new(warehouse):
    rows = warehouse.execute(
        "select distinct is_new, first_eligible_on from marts.eligible_candidates"
    ).fetchall()
    assert rows == [(True, SCREENING_DATE)]


# ------------------------------------------------------------------ run history


@pytest.fixture(scope="module")
def second_run(warehouse, tmp_path_factory):
    """A copy of the scenario warehouse, one week later (run 2) with one more patient, then
    run 2 again (same run_id) to prove the history is idempotent per run_id."""
    source = Path(warehouse.execute("select getvariable('scenario_db')").fetchone()[0])
    tmp = tmp_path_factory.mktemp("history")
    db_path = tmp / "history.duckdb"
    shutil.copy(source, db_path)
    later = date(2026, 11, 9)
    extra = Scenario()
    extra._n = 90000
    extra.baseline("NEWBIE")
    con = duckdb.connect(str(db_path))
    try:
        for entity, rows in extra.rows.items():
            if not rows:
                continue
            frame = schema.conform(entity, pl.DataFrame(rows, infer_schema_length=None))
            frame = frame.with_columns(
                pl.lit("scenario-run-2").alias("run_id"),
                pl.lit(datetime(2026, 11, 9, 3)).cast(schema.TS).alias("loaded_at"),
            )
            arrow = frame.to_arrow()  # noqa: F841 - read by name below
            con.execute(f"insert into raw.csv_{entity} by name select * from arrow")
        con.execute(
            "insert into restricted.patient_keys values (?, ?)",
            ["NEWBIE", pseudonym.patient_key("NEWBIE", KEY)],
        )
    finally:
        con.close()
    _run_dbt(db_path, tmp, run_id="scenario-run-2", on=later)

    def snapshot() -> tuple[int, list[tuple[Any, ...]]]:
        with duckdb.connect(str(db_path), read_only=True) as c:
            n = c.execute("select count(*) from marts.screening_candidate_history").fetchone()[0]
            rows = c.execute(
                "select patient_key, cohort_id, is_new, first_eligible_on "
                "from marts.eligible_candidates where trial_id = 'axiom' order by all"
            ).fetchall()
        return n, rows

    first = snapshot()
    _run_dbt(db_path, tmp, run_id="scenario-run-2", on=later)
    return first, snapshot()


def test_candidates_of_the_previous_run_are_not_new(second_run):
    (_, rows), _ = second_run
    base = pseudonym.patient_key("BASE", KEY)
    assert {(r[2], r[3]) for r in rows if r[0] == base} == {(False, SCREENING_DATE)}


def test_a_patient_first_eligible_in_this_run_is_new(second_run):
    (_, rows), _ = second_run
    newbie = pseudonym.patient_key("NEWBIE", KEY)
    assert {(r[2], r[3]) for r in rows if r[0] == newbie} == {(True, date(2026, 11, 9))}


def test_rerunning_the_same_run_id_is_idempotent(second_run):
    first, again = second_run
    assert first == again


# ------------------------------------------------------------------ PostgreSQL


@pytest.mark.postgres
def test_postgres_decides_every_criterion_like_duckdb(warehouse, pg_database, tmp_path):
    """The same scenario rows on PostgreSQL: identical statuses, values and reasons."""
    from trialscreen.warehouse import Warehouse

    scenario = build_scenarios()
    loaded = datetime(2026, 11, 2, 3, 0)
    trials = [
        load_trial("axiom"),
        load_trial(REPO / "include" / "trials" / "examples" / "second_trial.yml"),
    ]
    with Warehouse.connect(pg_database) as wh:
        for feed in schema.FEEDS:
            for entity in schema.RAW_TABLES:
                table = f"raw.{schema.raw_table(feed, entity)}"
                wh.ensure_table(table, {**schema.TABLE_COLUMNS[entity], **schema.LOAD_COLUMNS})
                if feed == "csv" and scenario.rows.get(entity):
                    frame = schema.conform(
                        entity, pl.DataFrame(scenario.rows[entity], infer_schema_length=None)
                    ).with_columns(
                        pl.lit(RUN_ID).alias("run_id"),
                        pl.lit(loaded).cast(schema.TS).alias("loaded_at"),
                    )
                    wh.load_frame(table, frame)
        keys = pl.DataFrame(
            {
                "mrn": [r["mrn"] for r in scenario.rows["patients"]],
                "patient_key": [
                    pseudonym.patient_key(r["mrn"], KEY) for r in scenario.rows["patients"]
                ],
            }
        )
        wh.replace_table("restricted.patient_keys", keys)
        for name, frame in trial_tables(trials).items():
            wh.ensure_schema("config")
            wh.replace_table(f"config.{name}", frame)
    _run_dbt(pg_database, tmp_path)

    sql = (
        "select trial_id, cohort_id, patient_key, criterion_id, status, "
        "value_numeric, threshold, uln_source, evidence_id, reason, "
        "comparator, margin, near_flip, evidence_date, valid_until, missing_item, next_step "
        "from marts.criterion_evaluations order by 1, 2, 3, 4"
    )

    def normalized(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [
            tuple(round(float(v), 4) if isinstance(v, int | float) else v for v in row)
            for row in rows
        ]

    with Warehouse.connect(pg_database) as wh:
        on_postgres = normalized(wh.query(sql))
    on_duckdb = normalized(warehouse.execute(sql).fetchall())
    assert len(on_postgres) == len(on_duckdb)
    differing = [(p, d) for p, d in zip(on_postgres, on_duckdb, strict=True) if p != d]
    assert differing[:3] == []


# ---------------------------------------------------------- issue 12: values, expiry, next steps


def _result(con: duckdb.DuckDBPyConnection, mrn: str, trial: str = "axiom",
            cohort: str = "asps") -> dict[str, Any]:  # fmt: skip
    cursor = con.execute(
        "select * from marts.screening_results where patient_key = ? and trial_id = ? "
        "and cohort_id = ?",
        [pseudonym.patient_key(mrn, KEY), trial, cohort],
    )
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def test_an_analyte_only_the_second_trial_judges_reaches_the_long_form_mart(warehouse):
    """WBC is in no AXIOM criterion and no column of screening_results: the second trial's
    criterion gets value, unit, threshold, comparator, margin and expiry with no SQL change."""
    wbc = evaluation(warehouse, "WBC", "wbc", trial="example_second")
    assert (wbc["status"], wbc["value_numeric"], wbc["value_unit"]) == ("met", 4.2, "10*9/L")
    assert (wbc["threshold"], wbc["comparator"]) == (3.0, ">=")
    assert wbc["margin"] == pytest.approx(1.2)
    assert wbc["margin_relative"] == pytest.approx(0.4)
    assert wbc["near_flip"] is False
    # the second trial's lab window is 14 days: 2026-10-30 + 14
    assert wbc["evidence_date"] == date(2026, 10, 30)
    assert wbc["valid_until"] == date(2026, 11, 13)
    near = evaluation(warehouse, "WBCNEAR", "wbc", trial="example_second")
    assert near["status"] == "met" and near["near_flip"] is True
    assert near["margin_relative"] == pytest.approx(0.1 / 3.0)
    assert near["valid_until"] == date(2026, 11, 8)
    missing = evaluation(warehouse, "BASE", "wbc", trial="example_second")
    assert missing["status"] == "unknown"
    assert (missing["missing_item"], missing["next_step"]) == (
        "wbc",
        "Order a CBC with differential",
    )
    assert "wbc" not in {
        c[0] for c in warehouse.execute("describe marts.screening_results").fetchall()
    }


@pytest.mark.parametrize(
    ("mrn", "criterion", "status", "comparator", "margin", "valid_until"),
    [
        # windowed labs: effective date + the 28-day window; margin in the criterion's direction
        ("BASE", "anc", "met", ">=", 2.0, date(2026, 11, 27)),
        ("BASE", "bilirubin", "met", "<=", 1.8 - 0.8, date(2026, 11, 27)),  # 1.5 x ULN 1.2
        ("BILI", "bilirubin", "not_met", "<=", 1.8 - 2.4, date(2026, 11, 27)),
        ("BASE", "performance_status", "met", "<=", 1.0, date(2026, 11, 25)),  # ECOG 1 vs <= 2
        ("BASE", "measurable_disease", "met", ">=", 15.0, date(2026, 11, 17)),  # 25 mm vs 10 mm
        ("BASE", "renal", "met", "<=", 1.8 - 1.0, date(2026, 11, 27)),  # creatinine arm alone
        ("HIVOK", "hiv", "met", "<", 50.0 - 20.0, date(2026, 11, 22)),  # VL 2026-10-25
        # nothing expires: age, a coded diagnosis, no HIV on record, review items
        ("AGE12", "age", "met", ">=", 0.0, None),
        ("BASE", "diagnosis_asps", "met", None, None, None),
        ("BASE", "hiv", "met", None, None, None),
        ("BASE", "informed_consent", "review", None, None, None),
    ],
)
def test_valid_until_and_margin_per_rule(warehouse, mrn, criterion, status, comparator, margin,
                                         valid_until):  # fmt: skip
    row = evaluation(warehouse, mrn, criterion)
    assert row["status"] == status
    assert row["comparator"] == comparator
    assert row["margin"] == (None if margin is None else pytest.approx(margin))
    assert row["valid_until"] == valid_until
    assert row["next_step"] is None  # only unknowns have one


def test_age_on_the_limit_is_not_flagged_as_near_flip(warehouse):
    # age does not expire and cannot fall: a 12-year-old on the limit is not "about to flip"
    assert evaluation(warehouse, "AGE12", "age")["near_flip"] is False


@pytest.mark.parametrize(
    ("mrn", "criterion", "missing_item", "next_step"),
    [
        ("ANCUNIT", "anc", "anc", "Order a CBC with differential"),
        ("CRNOHT", "renal", "height", "Record the height"),
        ("HIVSTALE", "hiv", "hiv_viral_load", "Order an HIV-1 RNA viral load"),
        ("TUMUND", "measurable_disease", "imaging_method",
         "Record the imaging method of the tumor measurement"),
    ],
)  # fmt: skip
def test_every_unknown_has_a_concrete_next_step(warehouse, mrn, criterion, missing_item,
                                                next_step):  # fmt: skip
    row = evaluation(warehouse, mrn, criterion)
    assert row["status"] == "unknown"
    assert (row["missing_item"], row["next_step"]) == (missing_item, next_step)
    assert row["valid_until"] is None and row["near_flip"] is False
    unnamed = warehouse.execute(
        "select count(*) from marts.criterion_evaluations "
        "where status = 'unknown' and (next_step is null or next_step = '')"
    ).fetchone()
    assert unnamed == (0,)


def test_rescreen_by_and_the_single_missing_item(warehouse):
    base = _result(warehouse, "BASE")
    assert base["candidate_status"] == "ready_for_review"
    # the earliest expiry: the tumor measurement of 2026-10-20 + 28 days
    assert base["rescreen_by"] == date(2026, 11, 17)
    assert base["sole_missing_criterion"] is None
    nohight = _result(warehouse, "CRNOHT")
    assert nohight["candidate_status"] == "missing_data" and nohight["n_unknown"] == 1
    assert (nohight["sole_missing_criterion"], nohight["sole_missing_next_step"]) == (
        "renal",
        "Record the height",
    )
    # an ineligible candidate has no single missing item
    assert _result(warehouse, "BILI")["sole_missing_criterion"] is None


def _scenario_copy(warehouse: duckdb.DuckDBPyConnection, folder: Path, name: str) -> Path:
    """A copy of this module's built warehouse file, for a test that changes or rebuilds it."""
    (source,) = warehouse.execute("select getvariable('scenario_db')").fetchone()
    copy = folder / name
    shutil.copy(source, copy)
    return copy


def _python(code: str, *args: object) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter with ``args`` (dbt-duckdb keeps its connection open
    in-process, which would lock the file against the test's own connection)."""
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env={**os.environ, "DO_NOT_TRACK": "1"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_completeness_test_fails_when_a_rule_model_leaves_the_union(warehouse, tmp_path):
    """Proof that the completeness test guards the union: the same warehouse rebuilt with
    int_criteria__hiv left out of the registry fails assert_every_criterion_evaluated_once."""
    copy = _scenario_copy(warehouse, tmp_path, "without_hiv.duckdb")
    code = (
        "import sys, json, datetime\n"
        "from trialscreen.transform import build_dbt, DbtBuildError\n"
        "try:\n"
        "    build_dbt(sys.argv[1], datetime.date.fromisoformat(sys.argv[2]), sys.argv[3],"
        " select='criterion_evaluations assert_every_criterion_evaluated_once',"
        " extra_vars={'criterion_rules': json.loads(sys.argv[4])}, artifacts_dir=sys.argv[5])\n"
        "except DbtBuildError as exc:\n"
        "    print('FAILED', [name for name, _ in exc.failures])\n"
        "    sys.exit(3)\n"
    )
    import yaml

    rules = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"][
        "criterion_rules"
    ]
    without_hiv = {rule: model for rule, model in rules.items() if rule != "hiv"}
    import json

    proc = _python(code, f"duckdb:///{copy}", SCREENING_DATE.isoformat(), RUN_ID,
                   json.dumps(without_hiv), tmp_path / "dbt")  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "assert_every_criterion_evaluated_once" in proc.stdout
    con = duckdb.connect(str(copy), read_only=True)
    try:
        hiv_rows = con.execute(
            "select count(*) from marts.criterion_evaluations where criterion_id = 'hiv'"
        ).fetchone()
    finally:
        con.close()
    assert hiv_rows == (0,)  # the criterion vanished: exactly what the test must catch
    # and the quality gate blocks publication on the same tables
    from trialscreen.validate import validate

    outcome = validate(f"duckdb:///{copy}", tmp_path / "reports", RUN_ID, SCREENING_DATE,
                       suites=("marts",))  # fmt: skip
    assert not outcome.success
    missing = [
        f
        for f in outcome.blocking_failures
        if f["asset"] == "check.criterion_completeness" and f["column"] == "missing_evaluations"
    ]
    assert missing, outcome.blocking_failures


def test_the_dbt_unit_tests_pass(warehouse, tmp_path):
    """The project's dbt unit tests run here, once per suite (transform.unit_test_dbt), not in
    the nightly builds (transform.NIGHTLY_EXCLUDED): every one declared under ``unit_tests:``
    runs and passes, on a copy of this module's built warehouse (dbt reads the column types of
    a unit test's inputs from their tables)."""
    import json

    import yaml

    copy = _scenario_copy(warehouse, tmp_path, "unit_tests.duckdb")
    code = (
        "import sys, json, datetime\n"
        "from trialscreen.transform import unit_test_dbt\n"
        "print(json.dumps(unit_test_dbt(sys.argv[1], datetime.date.fromisoformat(sys.argv[2]),"
        " sys.argv[3], artifacts_dir=sys.argv[4])))\n"
    )
    proc = _python(code, f"duckdb:///{copy}", SCREENING_DATE.isoformat(), RUN_ID, tmp_path / "dbt")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    results = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    declared = {
        f"unit_test.trialscreen.{test['model']}.{test['name']}"
        for path in (REPO / "dbt_project" / "models").rglob("*.yml")
        for test in (yaml.safe_load(path.read_text()) or {}).get("unit_tests", [])
    }
    assert len(declared) >= 10
    assert results == dict.fromkeys(declared, "pass")


KEY_COLUMNS = ("trial_id", "cohort_id", "patient_key", "criterion_id")


@pytest.mark.parametrize(
    ("model", "change", "found"),
    [
        # a null where none may be: the check, the column and how many rows hold a null
        ("marts.eligible_candidates", "update {model} set n_review = null where trial_id = 'axiom'",
         lambda changed, key: ("not_null", "n_review", None, changed)),
        # a status outside its list: the check, the column, the value and how many rows hold it
        ("intermediate.int_criteria__labs",
         "update {model} set status = 'maybe' where trial_id = 'axiom'",
         lambda changed, key: ("accepted_values", "status", "maybe", changed)),
        # one evaluation delivered twice: the check, the key's columns, its values, two rows
        ("marts.criterion_evaluations",
         "insert into {model} select * from {model} where {key}",
         lambda changed, key: ("unique_combination", ", ".join(KEY_COLUMNS), "|".join(key), 2)),
    ],
)  # fmt: skip
def test_a_model_level_column_test_fails_and_names_the_column(
    warehouse, tmp_path, model, change, found
):
    """A model's one row-checks test (dbt_project/macros/tests/row_checks.sql;
    docs/decisions.md, "One row-checks test per model") fails on one bad column or key, and
    its row says which check, which column, what it held and in how many rows."""
    copy = _scenario_copy(warehouse, tmp_path, "changed.duckdb")
    con = duckdb.connect(str(copy))
    try:
        key: tuple[Any, ...] = ()
        if "{key}" in change:  # the first evaluation's key
            key = (
                con.execute(
                    f"select {', '.join(KEY_COLUMNS)} from {model} where trial_id = 'axiom' "
                    "order by 1, 2, 3, 4 limit 1"
                ).fetchone()
                or ()
            )
        where = " and ".join(f"{c} = '{v}'" for c, v in zip(KEY_COLUMNS, key, strict=False))
        (changed,) = con.execute(change.format(model=model, key=where)).fetchone()
    finally:
        con.close()
    assert changed > 0
    code = (
        "import sys, datetime\n"
        "from trialscreen.transform import run_dbt, DbtBuildError\n"
        "try:\n"
        "    run_dbt('test', sys.argv[1], args=['--select', sys.argv[4]],"
        " artifacts_dir=sys.argv[2], dbt_vars={'screening_date': sys.argv[3], 'run_id': 'x'})\n"
        "except DbtBuildError as exc:\n"
        "    print('FAILED', *[name for name, _ in exc.failures])\n"
        "    sys.exit(3)\n"
    )
    name = model.split(".")[1]
    selector = f"{name},test_name:row_checks"
    url, day = f"duckdb:///{copy}", SCREENING_DATE.isoformat()
    proc = _python(code, url, tmp_path / "dbt", day, selector)
    assert proc.returncode == 3, proc.stderr[-3000:] + proc.stdout[-2000:]
    (failed,) = proc.stdout.split("FAILED", 1)[1].split()
    assert failed.startswith(f"test.trialscreen.row_checks_{name}_")
    # what the test's query returns
    (compiled,) = (tmp_path / "dbt" / "target" / "compiled").rglob("row_checks_*.sql")
    con = duckdb.connect(str(copy), read_only=True)
    try:
        assert con.execute(compiled.read_text()).fetchall() == [found(changed, key)]
    finally:
        con.close()
