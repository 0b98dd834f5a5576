"""Issue 10 item 2: local codes keyed by the sending facility (docs/decisions.md "Lab values as
laboratories send them").

Two laboratories may send the same local code for different tests. The parsers land the sender
in raw observations ``facility`` (HL7 MSH-4 namespace id, FHIR Observation.meta.source, CSV
``facility``); seed local_lab_codes is keyed by (local_code, facility) and int_observations
prefers the row naming the observation's facility over the blank-facility (any sender) row.

The warehouse is built the way tests/dbt/test_lab_text_values.py builds one, from a copy of the
dbt project whose local_lab_codes seed carries the test's code XFAC1 three times: LABA ->
hemoglobin, labb (spelled lowercase) -> platelets, blank -> ANC.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.dbt.test_criteria_scenarios import _run_dbt, _write_patient_keys, ts
from tests.dbt.test_issue11_scenarios import Scenarios, _create_raw
from trialscreen.feeds.csv import parse_csv_file
from trialscreen.feeds.fhir import parse_fhir_file
from trialscreen.feeds.hl7v2 import parse_hl7_bytes
from trialscreen.transform import DBT_PROJECT_DIR, PROJECT_DIR_ENV
from trialscreen.trial import load_trial, trial_tables, write_trial_tables_duckdb

CODE = "XFAC1"
_SOURCE = "tests/dbt/test_local_codes_by_facility.py"
SEED_ROWS = (
    f"{CODE},718-7,,Test code: hemoglobin at LABA,{_SOURCE},,,,LABA\n"
    f"{CODE},777-3,,Test code: platelets at LABB,{_SOURCE},,,,labb\n"
    f"{CODE},751-8,,Test code: ANC at any other facility,{_SOURCE},,,,\n"
)

_N = count(1)


# ---------------------------------------------------------------- parsers land the sender


def _hl7(msh4: str) -> bytes:
    return (
        f"MSH|^~\\&|LIS|{msh4}|TRIALSCREEN|HOSP|20261101120000||ORU^R01|MSG1|P|2.5.1\r"
        "PID|1||MRN-1^^^HOSP^MR||Doe^Jane||19800101|F\r"
        "OBR|1||ORD-1|CBC|||20261101083000\r"
        f"OBX|1|NM|{CODE}^Test^L||13.1|g/dL|12-16||||F\r"
    ).encode()


@pytest.mark.parametrize(
    ("msh4", "facility"),
    [("LABA^2.16.840.1.113883.19.4.6^ISO", "LABA"), ("LABB", "LABB"), ("", None)],
)
def test_hl7_lands_the_msh4_namespace_id(msh4: str, facility: str | None) -> None:
    obs = parse_hl7_bytes(_hl7(msh4), "hl7/x.hl7").tables["observations"]
    assert obs.height == 1
    assert obs["facility"].to_list() == [facility]
    assert obs["local_code"].to_list() == [CODE]


def test_fhir_lands_meta_source(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "urn:lab:local", "code": CODE}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-01T08:30:00Z",
        "valueQuantity": {"value": 13.1, "unit": "g/dL"},
    }
    lines = [
        {**base, "id": "o1", "meta": {"source": "LABA", "versionId": "2"}},
        {**base, "id": "o2", "meta": {"lastUpdated": "2026-11-01T09:00:00Z"}},
        {**base, "id": "o3"},
    ]
    path = tmp_path / "Observation.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    obs = parse_fhir_file(path, tmp_path).tables["observations"].sort("record_id")
    assert obs["facility"].to_list() == ["LABA", None, None]


def test_csv_facility_column_is_optional(tmp_path: Path) -> None:
    with_facility = tmp_path / "lab_results.csv"
    with_facility.write_text(
        "mrn,result_id,local_code,facility,value,unit,collected_at\n"
        f"MRN-1,R1,{CODE},LABB,250,10*9/L,2026-11-01\n"
        f"MRN-1,R2,{CODE},,250,10*9/L,2026-11-01\n"
    )
    obs = parse_csv_file(with_facility, tmp_path).tables["observations"].sort("record_id")
    assert obs["facility"].to_list() == ["LABB", None]
    without = tmp_path / "lab_results.2.csv"
    without.write_text(
        f"mrn,result_id,local_code,value,collected_at\nMRN-1,R3,{CODE},1,2026-11-01\n"
    )
    parsed = parse_csv_file(without, tmp_path)
    assert parsed.quarantined.height == 0
    assert parsed.tables["observations"]["facility"].to_list() == [None]


# ---------------------------------------------------------------- the seed join in dbt


def raw_obs(s: Scenarios, feed: str, mrn: str, local_code: str, facility: str | None,
            **kw: Any) -> str:  # fmt: skip
    """One lab observation of `feed` under a local code, as its parser lands it."""
    n = next(_N)
    record_id = f"{feed}-fac{n}"
    row: dict[str, Any] = {
        "source_file": f"{feed}/facility-{n}", "source_position": n, "record_id": record_id,
        "record_hash": f"h-{feed}-fac{n}", "patient_ref": mrn, "mrn": mrn,
        "category": "laboratory", "loinc": None, "local_code": local_code,
        "facility": facility, "status": "final", "value_type": "quantity",
        "effective_at": ts("2026-10-31"), "issued_at": ts("2026-10-31", 11),
        "order_id": f"ord-fac{n}",
    }  # fmt: skip
    row.update(kw)
    if feed == "csv":
        s.rows["observations"].append(row)
    else:
        s.add(feed, "observations", row)
    return f"{feed}:{record_id}"


# observation_id -> (facility as staged, expected analyte)
EXPECTED: dict[str, tuple[str | None, str]] = {}


def build() -> Scenarios:
    s = Scenarios()
    hgb = {"value_numeric": 13.1, "value_unit": "g/dL"}
    plt = {"value_numeric": 250.0, "value_unit": "10*9/L"}
    anc = {"value_numeric": 3.2, "value_unit": "10*9/L"}
    cases: list[tuple[str, str, str, str | None, str | None, str, dict[str, Any]]] = [
        # (mrn, feed, code, facility sent, facility staged, analyte, value)
        ("FACA", "hl7", CODE, "LABA", "LABA", "hemoglobin", hgb),
        ("FACB", "hl7", CODE, "LabB", "LABB", "platelets", plt),  # seed spells it labb
        ("FACC", "hl7", CODE, "LABC", "LABC", "anc", anc),  # blank row: any facility
        ("FACN", "hl7", CODE, None, None, "anc", anc),  # no sender: the blank row
        ("FACHGB", "hl7", "HGB", "LABA", "LABA", "hemoglobin", hgb),  # blank-only seed code
        ("FACCSV", "csv", CODE, " labb ", "LABB", "platelets", plt),
        ("FACFHIR", "fhir", CODE, "LABA", "LABA", "hemoglobin", hgb),
    ]
    for mrn, feed, code, sent, staged, analyte, value in cases:
        s.baseline(mrn)
        EXPECTED[raw_obs(s, feed, mrn, code, sent, **value)] = (staged, analyte)
    return s


SCENARIOS = build()


def _project_copy(tmp: Path) -> Path:
    """dbt_project/ with the test's rows appended to seed local_lab_codes."""
    project = tmp / "dbt_project"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    seed = project / "seeds" / "local_lab_codes.csv"
    text = seed.read_text(encoding="utf-8")
    seed.write_text(text + ("" if text.endswith("\n") else "\n") + SEED_ROWS, encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("facility")
    db_path = tmp / "facility.duckdb"
    con = duckdb.connect(str(db_path))
    try:
        _create_raw(con, SCENARIOS)
        _write_patient_keys(con, SCENARIOS)
        write_trial_tables_duckdb(con, trial_tables([load_trial("axiom")]))
    finally:
        con.close()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PROJECT_DIR_ENV, str(_project_copy(tmp)))
        _run_dbt(db_path, tmp)
    con = duckdb.connect(str(db_path), read_only=True)
    yield con
    con.close()


def _relation(con: duckdb.DuckDBPyConnection, name: str) -> str:
    (schema_name,) = con.execute(
        "select table_schema from information_schema.tables where table_name = ?", [name]
    ).fetchone() or (None,)
    assert schema_name, name
    return f"{schema_name}.{name}"


@pytest.mark.parametrize("observation_id", sorted(EXPECTED))
def test_local_code_maps_by_facility(wh, observation_id: str) -> None:
    facility, analyte = EXPECTED[observation_id]
    got = wh.execute(
        f"select facility, analyte from {_relation(wh, 'int_observations')}"
        " where observation_id = ?",
        [observation_id],
    ).fetchall()
    assert got == [(facility, analyte)]


def test_facility_rows_are_not_unmapped(wh) -> None:
    codes = {r[0] for r in wh.execute("select code from marts.dq_unmapped_codes").fetchall()}
    assert CODE not in codes and "HGB" not in codes
