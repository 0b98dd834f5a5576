"""A warehouse built once per test session: raw tables with hand-written rows, then
``dbt seed`` + ``dbt build`` of staging and intermediate/normalized through
``trialscreen.transform``. Tests read the resulting tables with the duckdb client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from trialscreen import schema
from trialscreen.pseudonym import patient_key
from trialscreen.transform import seed_and_build

TEST_KEY = "test-only-pseudonym-key"
SCREENING_DATE = date(2026, 11, 2)
LOAD_1 = datetime(2026, 11, 1, 2, 0)
LOAD_2 = datetime(2026, 11, 2, 2, 0)
T0 = datetime(2026, 10, 30, 8, 0)
T1 = datetime(2026, 10, 30, 9, 0)
T2 = datetime(2026, 10, 31, 9, 0)

BUILD_SELECT = "path:seeds path:models/staging path:models/intermediate/normalized"
# the trial configuration (schema config) is not written here
BUILD_EXCLUDE = "path:models/staging/config"

_DUCKDB_TYPES = {
    pl.String: "varchar",
    pl.Int64: "bigint",
    pl.Int32: "integer",
    pl.Float64: "double",
    pl.Date: "date",
    pl.Datetime: "timestamp",
}


def _sql_type(dtype: pl.DataType) -> str:
    for polars_type, sql_type in _DUCKDB_TYPES.items():
        if isinstance(dtype, polars_type) or dtype == polars_type:
            return sql_type
    raise TypeError(f"no DuckDB type for {dtype}")


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty raw.<feed>_<entity> tables with the loader's columns, and restricted.patient_keys."""
    con.execute("create schema if not exists raw")
    con.execute("create schema if not exists restricted")
    for feed in schema.FEEDS:
        for entity in schema.RAW_TABLES:
            columns = {**schema.TABLE_COLUMNS[entity], **schema.LOAD_COLUMNS}
            ddl = ", ".join(f'"{name}" {_sql_type(dtype)}' for name, dtype in columns.items())
            con.execute(f"create table raw.{schema.raw_table(feed, entity)} ({ddl})")
    con.execute("create table restricted.patient_keys (mrn varchar, patient_key varchar)")


def insert(
    con: duckdb.DuckDBPyConnection, feed: str, entity: str, rows: list[dict[str, Any]]
) -> None:
    """Insert rows (missing columns null; lineage defaulted) into raw.<feed>_<entity>."""
    columns = [*schema.RAW_COLUMNS[entity], *schema.LOAD_COLUMNS]
    for position, row in enumerate(rows, start=1):
        full = {
            "source_file": f"{feed}/{entity}.dat",
            "source_position": position,
            "record_hash": f"hash-{feed}-{entity}-{position}",
            "run_id": "run-test",
            "loaded_at": LOAD_1,
            **row,
        }
        values = [full.get(name) for name in columns]
        placeholders = ", ".join("?" for _ in columns)
        names = ", ".join(f'"{c}"' for c in columns)
        con.execute(
            f"insert into raw.{schema.raw_table(feed, entity)} ({names}) values ({placeholders})",
            values,
        )


def _obs(
    record_id: str, loinc: str | None, value: float | None, unit: str | None, **extra: Any
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "loinc": loinc,
        "value_type": "quantity",
        "value_numeric": value,
        "value_unit": unit,
        "status": "final",
        "effective_at": T0,
        "issued_at": T0,
        **extra,
    }


def load_fixture_rows(con: duckdb.DuckDBPyConnection) -> None:
    # ---------------------------------------------------------------- patients
    insert(
        con,
        "fhir",
        "patients",
        [
            {
                "record_id": "pat-1",
                "patient_ref": "pat-1",
                "mrn": "MRN001",
                "family_name": "Old",
                "given_name": "Ann",
                "birth_date": date(1980, 5, 1),
                "sex": "female",
            },
            # re-delivered with a changed name: the later load wins
            {
                "record_id": "pat-1",
                "patient_ref": "pat-1",
                "mrn": "MRN001",
                "family_name": "Newname",
                "given_name": "Ann",
                "birth_date": date(1980, 5, 1),
                "sex": "female",
                "loaded_at": LOAD_2,
            },
        ],
    )
    insert(
        con,
        "hl7",
        "patients",
        [
            {
                "record_id": "MSG1",
                "patient_ref": "MRN002",
                "mrn": "MRN002",
                "family_name": "Lab",
                "birth_date": date(2014, 11, 2),
                "sex": "M",
            },
        ],
    )
    insert(
        con,
        "csv",
        "patients",
        [
            {
                "record_id": "MRN003",
                "patient_ref": "MRN003",
                "mrn": " MRN003 ",
                "birth_date": date(1990, 1, 1),
                "sex": "F",
            },
        ],
    )
    keys = [(mrn, patient_key(mrn, TEST_KEY)) for mrn in ("MRN001", "MRN002", "MRN003")]
    con.executemany("insert into restricted.patient_keys values (?, ?)", keys)

    # ---------------------------------------------------------------- observations
    fhir = {"patient_ref": "pat-1", "mrn": None}
    insert(
        con,
        "fhir",
        "observations",
        [
            _obs("f-cr-mgdl", "2160-0", 1.1, "mg/dl", ref_high=1.2, **fhir),
            _obs("f-cr-umol", "14682-9", 97.24, "umol/L", ref_high=106.08, **fhir),
            _obs("f-hgb-gl", "718-7", 125, "g/L", **fhir),
            _obs("f-hgb-big-g", "718-7", 130, "G/L", **fhir),
            _obs("f-plt-big-g", "777-3", 250, "G/L", **fhir),
            _obs("f-hgb-implausible", "718-7", 40, "g/dL", **fhir),
            _obs("f-hgb-unmapped", "718-7", 12.5, "g/mL", **fhir),
            _obs(
                "f-plt-code",
                "777-3",
                300,
                "thousand per microliter",
                value_unit_code="10*3/uL",
                **fhir,
            ),
            _obs("f-anc-v", "751-8", 5.0, "10*9/L", **fhir),
            _obs("f-anc-v", "751-8", 6.0, "10*9/L", loaded_at=LOAD_2, **fhir),
            _obs("f-anc-prelim", "751-8", 0.4, "10*9/L", status="preliminary", **fhir),
            _obs("f-anc-cancelled", "751-8", 0.3, "10*9/L", status="cancelled", **fhir),
            _obs("f-ecog", "89247-1", 1, None, value_type="integer", **fhir),
            _obs(
                "f-ecog-coded",
                "89247-1",
                None,
                None,
                value_type="coded",
                value_code="422894000",
                value_code_system="http://snomed.info/sct",
                **fhir,
            ),
            _obs("f-vl-log", "29541-0", 1.3, "log10 copies/mL", value_comparator="<", **fhir),
            _obs(
                "f-vl-nd",
                "20447-9",
                None,
                None,
                value_type="coded",
                value_code="260415000",
                value_code_system="http://snomed.info/sct",
                **fhir,
            ),
            _obs(
                "f-vl-text",
                "20447-9",
                None,
                None,
                value_type="string",
                value_text="see note",
                **fhir,
            ),
            _obs("f-glucose", "2345-7", 5.5, "mmol/L", **fhir),
            _obs("f-tumor", "21889-1", 2.5, "cm", method_code="ct", **fhir),
            _obs(
                "f-late-evening",
                "1751-7",
                3.9,
                "g/dL",
                effective_at=datetime(2026, 11, 1, 23, 30),
                **fhir,
            ),
        ],
    )
    hl7 = {"patient_ref": "MRN002", "mrn": "MRN002"}
    insert(
        con,
        "hl7",
        "observations",
        [
            _obs("MSG1|1|PLT", None, 45, "K/uL", local_code="plt", local_system="L", **hl7),
            _obs("MSG1|2|26515-7", "26515-7", 210000, "{cells}/uL", **hl7),
            _obs("MSG1|3|2160-0", "2160-0", 1.0, "mg/dL", order_id="ORD1", issued_at=T1, **hl7),
            _obs(
                "MSG2|1|2160-0",
                "2160-0",
                1.4,
                "mg/dL",
                order_id="ORD1",
                status="corrected",
                issued_at=T2,
                **hl7,
            ),
            _obs(
                "MSG3|1|751-8",
                "751-8",
                0.5,
                "10^9/L",
                order_id="ORD2",
                status="preliminary",
                issued_at=T2,
                **hl7,
            ),
            _obs(
                "MSG4|1|751-8",
                "751-8",
                1.5,
                "10^9/L",
                order_id="ORD2",
                status="F",
                issued_at=T1,
                **hl7,
            ),
            _obs("MSG5|1|1975-2", "1975-2", 0.8, "mg/dL", order_id="ORD3", status="X", **hl7),
            _obs("MSG6|1|1742-6", "1742-6", 35, "IU/L", **hl7),
        ],
    )
    csv = {"patient_ref": "MRN003", "mrn": "MRN003"}
    insert(
        con,
        "csv",
        "observations",
        [
            _obs("wt-1", "29463-7", 154, "lb", **csv),
            _obs("ht-1", "8302-2", 65, "in", **csv),
            _obs("ps-1", None, 80, None, local_code="lansky", value_type="integer", **csv),
            _obs("na-1", "2951-2", 140, "mEq/L", status=None, **csv),
        ],
    )

    # ---------------------------------------------------------------- conditions
    insert(
        con,
        "fhir",
        "conditions",
        [
            {
                "record_id": "cond-1",
                "patient_ref": "pat-1",
                "code_system": "http://hl7.org/fhir/sid/icd-10-cm",
                "code": "C78.7",
                "code_display": "Secondary malignant neoplasm of liver",
                "clinical_status": "active",
                "verification_status": "confirmed",
                "onset_at": datetime(2026, 1, 1, 12),
            },
            {
                "record_id": "cond-2",
                "patient_ref": "pat-1",
                "code_system": "http://terminology.hl7.org/CodeSystem/icd-o-3",
                "code": "9581/3",
                "code_display": "Alveolar soft part sarcoma",
            },
        ],
    )
    insert(
        con,
        "csv",
        "conditions",
        [
            {
                "record_id": "cc-1",
                "patient_ref": "MRN003",
                "mrn": "MRN003",
                "code_system": "icd-10-cm",
                "code": "c49.9 ",
                "code_text": "Sarcoma of soft tissue",
                "clinical_status": "Active",
                "verification_status": "refuted",
            },
            {
                "record_id": "cc-2",
                "patient_ref": "MRN003",
                "mrn": "MRN003",
                "code_system": "text",
                "code": None,
                "code_text": "Alveolar Soft Part Sarcoma",
                "clinical_status": "resolved",
            },
        ],
    )

    # ---------------------------------------------------------------- medications
    insert(
        con,
        "fhir",
        "medications",
        [
            {
                "record_id": "med-1",
                "patient_ref": "pat-1",
                "resource_type": "MedicationStatement",
                "code_system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "1547545",
                "code_display": "Keytruda",
                "code_text": "pembrolizumab 100 MG",
                "status": "completed",
                "start_at": datetime(2025, 1, 10, 9),
                "end_at": datetime(2025, 6, 1, 9),
            },
        ],
    )
    insert(
        con,
        "csv",
        "medications",
        [
            {
                "record_id": "m-1",
                "patient_ref": "MRN003",
                "mrn": "MRN003",
                "resource_type": "request",
                "code_system": "atc",
                "code": "j05ar20",
                "code_text": "Biktarvy",
                "status": "Active",
                "start_at": datetime(2026, 1, 1),
            },
        ],
    )


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Path of a DuckDB warehouse built once: raw fixture rows -> dbt seed -> dbt build."""
    path = tmp_path_factory.mktemp("warehouse") / "trialscreen.duckdb"
    with duckdb.connect(str(path)) as con:
        create_raw_tables(con)
        load_fixture_rows(con)
    seed_and_build(
        str(path),
        SCREENING_DATE,
        "run-test",
        select=BUILD_SELECT,
        exclude=BUILD_EXCLUDE,
        artifacts_dir=tmp_path_factory.mktemp("dbt-artifacts"),
    )
    yield path


@pytest.fixture(scope="session")
def db(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    # same configuration as dbt-duckdb's in-process connection (read_only would be refused)
    con = duckdb.connect(str(warehouse))
    yield con
    con.close()


# ------------------------------------------------------------------ shared scenario warehouse
# The scenario modules whose patients are the baseline of test_criteria_scenarios differing in
# one respect, on the axiom trial and the same screening date, read one warehouse built once
# per session instead of one dbt build each. Their MRNs are disjoint and their record ids are
# numbered apart (each module's Scenarios starts its ids at its own 100,000). Modules whose
# warehouse differs in kind keep their own: test_criteria_scenarios (two trials, a second run
# on a copy), test_patients_merge (per-delivery load times, counts of the whole population),
# test_local_codes_by_facility (rows added to a seed).


def merge_scenarios(parts: list[Any]) -> Any:
    """One Scenarios holding every part's rows (CSV rows, other feeds' rows, codings)."""
    from tests.dbt.test_issue11_scenarios import Scenarios

    merged = Scenarios()
    for part in parts:
        for entity, rows in part.rows.items():
            merged.rows.setdefault(entity, []).extend(rows)
        for key, rows in part.extra.items():
            merged.extra.setdefault(key, []).extend(rows)
    mrns = [r["mrn"] for r in merged.rows["patients"]]
    assert len(mrns) == len(set(mrns)), "scenario modules share an MRN"
    tables = [*((("csv", e), rs) for e, rs in merged.rows.items()), *merged.extra.items()]
    ids = [
        (feed, entity, r["record_id"])
        for (feed, entity), rows in tables
        for r in rows
        if entity != "codings"
    ]
    assert len(ids) == len(set(ids)), "scenario modules share a record id"
    return merged


@pytest.fixture(scope="session")
def scenario_wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """test_issue11_scenarios, test_lab_text_values and test_tumour_measurements: their
    patients in one warehouse, one ``dbt build`` (read-only connection)."""
    from tests.dbt import test_issue11_scenarios, test_lab_text_values, test_tumour_measurements
    from tests.dbt.test_criteria_scenarios import _run_dbt, _write_patient_keys
    from trialscreen.trial import load_trial, trial_tables, write_trial_tables_duckdb

    tmp = tmp_path_factory.mktemp("scenarios_shared")
    merged = merge_scenarios(
        [
            test_issue11_scenarios.SCENARIOS,
            test_lab_text_values.SCENARIOS,
            test_tumour_measurements.scenarios(tmp),
        ]
    )
    db_path = tmp / "scenarios.duckdb"
    con = duckdb.connect(str(db_path))
    try:
        test_issue11_scenarios._create_raw(con, merged)
        _write_patient_keys(con, merged)
        write_trial_tables_duckdb(con, trial_tables([load_trial("axiom")]))
    finally:
        con.close()
    _run_dbt(db_path, tmp)
    con = duckdb.connect(str(db_path), read_only=True)
    yield con
    con.close()
