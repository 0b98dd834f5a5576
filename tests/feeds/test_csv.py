"""The CSV feed parser: the Synthea export lands with the counts PROVENANCE.md states, and the
TrialScreen contract maps every entity, quarantines bad rows and bad files, and keeps
``records_in == rows out + quarantined``."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import time
from pathlib import Path

import polars as pl
import pytest

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.csv import is_csv_file, parse_csv_file
from trialscreen.feeds.csv.contract import CSV_FILES

REPO = Path(__file__).resolve().parents[2]
SYNTHEA = "synthea-dbt-synthea-csv"
PHI = ("MRN-0001", "MRN-0002", "Doe", "Jane", "1980-02-29")


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def _assert_invariant(parsed: ParsedFile) -> None:
    assert parsed.records_in == parsed.rows_out + parsed.quarantined.height
    for entity, frame in parsed.tables.items():
        assert frame.schema == pl.Schema(schema.RAW_COLUMNS[entity])
    assert parsed.quarantined.schema == pl.Schema(schema.QUARANTINE_COLUMNS)


def _assert_errors_phi_free(parsed: ParsedFile) -> None:
    for error in parsed.quarantined["error"].to_list():
        assert not any(value in error for value in PHI), error


def _only(parsed: ParsedFile, entity: str) -> pl.DataFrame:
    assert list(parsed.tables) == [entity]
    return parsed.tables[entity]


def _row(frame: pl.DataFrame, record_id: str) -> dict[str, object]:
    rows = frame.filter(pl.col("record_id") == record_id).to_dicts()
    assert len(rows) == 1, record_id
    return rows[0]


# ---------------------------------------------------------------- Synthea export


@pytest.fixture(scope="module")
def synthea(external_dir: Path) -> dict[str, ParsedFile]:
    folder = external_dir / SYNTHEA
    return {p.name.split(".")[0]: parse_csv_file(p, external_dir) for p in folder.glob("*.csv")}


def test_synthea_observation_counts_per_loinc_match_provenance(
    synthea: dict[str, ParsedFile],
) -> None:
    observations = _only(synthea["observations"], "observations")
    assert observations.height == 990
    per_code = {
        row["loinc"]: (row["rows"], row["patients"])
        for row in observations.group_by("loinc")
        .agg(pl.len().alias("rows"), pl.col("patient_ref").n_unique().alias("patients"))
        .to_dicts()
    }
    assert per_code["38483-4"] == (10, 6)
    assert per_code["2947-0"] == (10, 6)
    assert per_code["718-7"] == (5, 5)
    assert per_code["29463-7"] == (27, 24)
    assert per_code["8302-2"] == (27, 24)
    creatinine = observations.filter(pl.col("loinc") == "38483-4")
    assert (creatinine["value_numeric"].min(), creatinine["value_numeric"].max()) == (0.7, 3.2)
    assert set(creatinine["value_unit"]) == {"mg/dL"}


def test_synthea_non_loinc_codes_become_local_codes_and_text_values_stay_text(
    synthea: dict[str, ParsedFile],
) -> None:
    observations = synthea["observations"].tables["observations"]
    assert set(observations.filter(pl.col("loinc").is_null())["local_code"]) == {
        "QALY", "QOLS", "DALY",
    }  # fmt: skip
    text = observations.filter(pl.col("value_type") == "string")
    assert text.height == 391
    assert text["value_numeric"].null_count() == 391
    death = text.filter(pl.col("loinc") == "69453-9")
    assert set(death["value_text"]) == {"Myocardial Infarction"}
    assert death["value_unit"].null_count() == death.height  # Synthea's literal "null" unit
    assert set(observations["status"]) == {"final"}
    first = observations.row(0, named=True)
    assert first["effective_at"] == dt.datetime(2023, 10, 10, 4, 17, 47)
    assert (first["loinc"], first["value_numeric"], first["value_unit"]) == ("8302-2", 127.9, "cm")


def test_synthea_patients_use_the_id_as_mrn(synthea: dict[str, ParsedFile]) -> None:
    patients = _only(synthea["patients"], "patients")
    assert patients.height == 27
    assert (patients["mrn"] == patients["patient_ref"]).all()
    assert patients["sex"].value_counts().sort("sex").rows() == [("F", 13), ("M", 14)]
    assert patients["deceased_at"].drop_nulls().len() == 2
    assert patients["birth_date"].min().year == 1949  # type: ignore[union-attr]
    first = _row(patients, "3edac2e3-d223-6fae-d515-daf96ef6bc76")
    assert first["birth_date"] == dt.date(2014, 10, 6)


def test_synthea_conditions_are_snomed_and_medications_rxnorm(
    synthea: dict[str, ParsedFile],
) -> None:
    conditions = _only(synthea["conditions"], "conditions")
    assert conditions.height == 438
    assert set(conditions["code_system"]) == {"http://snomed.info/sct"}
    assert conditions["record_id"].n_unique() == 438
    assert set(conditions["clinical_status"]) == {"active", "resolved"}
    medications = _only(synthea["medications"], "medications")
    assert medications.height == 663
    assert medications["record_id"].n_unique() == 663
    assert set(medications["code_system"]) == {"http://www.nlm.nih.gov/research/umls/rxnorm"}
    assert set(medications["resource_type"]) == {"MedicationRequest"}
    assert medications.filter(pl.col("status") == "active").height == 46  # rows without STOP


def test_synthea_unused_files_are_counted_as_ignored(synthea: dict[str, ParsedFile]) -> None:
    encounters = synthea["encounters"]
    assert encounters.ignored == {"encounters": 604}
    assert (encounters.records_in, encounters.rows_out, encounters.quarantined.height) == (0, 0, 0)
    assert synthea["allergies"].ignored == {"allergies": 40}  # PROVENANCE.md
    for parsed in synthea.values():
        _assert_invariant(parsed)
        assert parsed.quarantined.is_empty()
        assert parsed.source_file.startswith(f"{SYNTHEA}/")


def test_synthea_conditions_with_a_system_column_use_it(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "conditions.csv",
        "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION\n"
        "2024-01-02,,p1,e1,SNOMED-CT,254632001,Small cell carcinoma of lung\n"
        "2024-01-02,,p1,e1,http://hl7.org/fhir/sid/icd-10-cm,C78.7,Liver metastasis\n",
    )
    conditions = _only(parse_csv_file(path, tmp_path), "conditions")
    assert conditions["code_system"].to_list() == [
        "http://snomed.info/sct",
        "http://hl7.org/fhir/sid/icd-10-cm",
    ]


# ---------------------------------------------------------------- the TrialScreen contract

LAB_RESULTS = """\
mrn,result_id,loinc,local_code,test_name,value,unit,value_code,value_code_system,ref_low,ref_high,ref_range,abnormal_flag,status,order_id,collected_at,reported_at
MRN-0001,R1,751-8,,ANC,<0.5,10*9/L,,,1.5,8.0,1.5-8.0,L,final,O1,2026-11-01T08:30:00Z,2026-11-01T12:00:00+02:00
MRN-0001,R2,777-3,,Platelets,<= 2,K/uL,,,,,,,,O1,2026-11-01T08:30:00-05:00,
MRN-0001,R3,,ANC-LOC,ANC local,>5.0,x10E3/uL,,,,,,,corrected,O1,2026-11-01 08:30,
MRN-0002,R4,718-7,,Hemoglobin,11.2,g/dL,,,12,16,,,FINAL,O2,2026-11-02,
MRN-0002,R5,25836-8,,HIV-1 RNA,Not detected,,260415000,snomed,,,,,final,O3,2026-11-02T09:00:00,
,R6,718-7,,Hemoglobin,9.9,g/dL,,,,,,,final,O4,2026-11-02T09:00:00Z,
MRN-0002,R7,718-7,,Hemoglobin,10.1,g/dL,,,,,,,final,O5,1980-02-29T25:00:00,
MRN-0002,R8,,,Mystery,3,,,,,,,,final,O6,2026-11-02T09:00:00Z,
MRN-0002,,718-7,,Hemoglobin,10.1,g/dL,,,,,,,final,O7,2026-11-02T09:00:00Z,
"""


def test_lab_results_parse_comparators_codes_and_timestamps(tmp_path: Path) -> None:
    parsed = parse_csv_file(_write(tmp_path, "lab_results.2026-11-02.csv", LAB_RESULTS), tmp_path)
    labs = _only(parsed, "observations")
    assert labs["record_id"].to_list() == ["R1", "R2", "R3", "R4", "R5"]
    r1, r2, r3, r4, r5 = (_row(labs, f"R{i}") for i in range(1, 6))
    assert (r1["value_comparator"], r1["value_numeric"], r1["value_type"]) == ("<", 0.5, "quantity")
    assert (r2["value_comparator"], r2["value_numeric"]) == ("<=", 2.0)
    assert (r3["value_comparator"], r3["value_numeric"]) == (">", 5.0)
    assert (r4["value_comparator"], r4["value_numeric"], r4["value_text"]) == (None, 11.2, None)
    assert (r1["ref_low"], r1["ref_high"], r1["ref_text"]) == (1.5, 8.0, "1.5-8.0")
    assert r4["ref_text"] == "12-16"
    assert r1["effective_at"] == dt.datetime(2026, 11, 1, 8, 30)
    assert r1["issued_at"] == dt.datetime(2026, 11, 1, 12, 0)  # +02:00: wall clock as sent
    assert r1["issued_at_offset_min"] == 120
    assert r2["effective_at"] == dt.datetime(2026, 11, 1, 8, 30)  # -05:00: as sent
    assert r2["effective_at_offset_min"] == -300
    assert r3["effective_at"] == dt.datetime(2026, 11, 1, 8, 30)  # naive = UTC
    assert r4["effective_at"] == dt.datetime(2026, 11, 2)  # date-only = midnight UTC
    assert (r3["loinc"], r3["local_code"]) == (None, "ANC-LOC")
    assert (r2["status"], r3["status"], r4["status"]) == ("final", "corrected", "final")
    assert (r5["value_type"], r5["value_text"], r5["value_numeric"]) == (
        "coded",
        "Not detected",
        None,
    )
    assert (r5["value_code"], r5["value_code_system"]) == ("260415000", "http://snomed.info/sct")
    assert all(v == "MRN-0001" for v in labs.filter(pl.col("order_id") == "O1")["patient_ref"])
    assert labs["source_position"].to_list() == [1, 2, 3, 4, 5]
    assert labs["source_file"].unique().to_list() == ["lab_results.2026-11-02.csv"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in labs["record_hash"])


def test_lab_rows_without_mrn_id_code_or_valid_time_are_quarantined_and_the_rest_loads(
    tmp_path: Path,
) -> None:
    parsed = parse_csv_file(_write(tmp_path, "lab_results.csv", LAB_RESULTS), tmp_path)
    assert (parsed.records_in, parsed.rows_out, parsed.quarantined.height) == (9, 5, 4)
    _assert_invariant(parsed)
    _assert_errors_phi_free(parsed)
    quarantined = {row["source_position"]: row for row in parsed.quarantined.to_dicts()}
    assert quarantined[6]["error"] == "missing mrn"
    assert quarantined[7]["error"] == (
        "unparseable or unrepresentable timestamp in column 'collected_at'"
    )
    assert quarantined[8]["error"] == "lab result has neither loinc nor local_code"
    assert quarantined[9]["error"] == "missing result_id"
    assert (
        quarantined[6]["raw_payload"]
        == ",R6,718-7,,Hemoglobin,9.9,g/dL,,,,,,,final,O4,2026-11-02T09:00:00Z,"
    )
    assert {row["scope"] for row in quarantined.values()} == {"record"}
    assert {row["feed"] for row in quarantined.values()} == {"csv"}


def test_patients_with_a_bad_birth_date_are_quarantined(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "patients.csv",
        "mrn,family_name,given_name,birth_date,sex,deceased_at\n"
        "MRN-0001,Doe,Jane,1980-02-29,female,\n"
        "MRN-0002,Roe,Rick,29/02/1980,male,\n"
        ",Doe,Jane,1980-02-29,female,\n"
        "MRN-0003,Poe,Pat,1950-05-01,other,2026-10-01T04:00:00+02:00\n",
    )
    parsed = parse_csv_file(path, tmp_path)
    patients = _only(parsed, "patients")
    _assert_invariant(parsed)
    _assert_errors_phi_free(parsed)
    assert patients["mrn"].to_list() == ["MRN-0001", "MRN-0003"]
    jane = _row(patients, "MRN-0001")
    assert (jane["birth_date"], jane["family_name"], jane["sex"]) == (
        dt.date(1980, 2, 29), "Doe", "female",
    )  # fmt: skip
    pat = _row(patients, "MRN-0003")
    assert (pat["deceased_at"], pat["deceased_at_offset_min"]) == (dt.datetime(2026, 10, 1, 4), 120)
    assert parsed.quarantined["error"].to_list() == [
        "unparseable date in column 'birth_date' (want YYYY-MM-DD)",
        "missing mrn",
    ]
    assert parsed.quarantined["source_position"].to_list() == [2, 3]


def test_vitals_need_a_numeric_value(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "vitals.csv",
        "mrn,vital_id,loinc,value,unit,status,measured_at\n"
        "MRN-0001,V1,29463-7,72.5,kg,,2026-11-01T08:00:00Z\n"
        "MRN-0001,V2,8302-2,170,cm,final,2026-11-01\n"
        "MRN-0001,V3,29463-7,heavy,kg,final,2026-11-01\n",
    )
    parsed = parse_csv_file(path, tmp_path)
    vitals = _only(parsed, "observations")
    _assert_invariant(parsed)
    assert vitals.select("loinc", "value_numeric", "value_unit", "category").rows() == [
        ("29463-7", 72.5, "kg", "vital-signs"),
        ("8302-2", 170.0, "cm", "vital-signs"),
    ]
    assert parsed.quarantined["error"].to_list() == ["non-numeric value in column 'value'"]


def test_performance_status_maps_scales_to_loinc_and_keeps_lansky(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "performance_status.csv",
        "mrn,assessment_id,scale,score,status,assessed_at\n"
        "MRN-0001,P1,ECOG,1,final,2026-11-01\n"
        "MRN-0001,P2,karnofsky,80,final,2026-11-01\n"
        "MRN-0002,P3,lansky,60,,2026-11-01T10:00:00Z\n"
        "MRN-0002,P4,ecog,7,final,2026-11-01\n"
        "MRN-0002,P5,zubrod,1,final,2026-11-01\n"
        "MRN-0002,P6,ecog,1.5,final,2026-11-01\n",
    )
    parsed = parse_csv_file(path, tmp_path)
    scores = _only(parsed, "observations")
    _assert_invariant(parsed)
    assert scores.select(
        "record_id", "loinc", "local_code", "value_numeric", "value_type", "category"
    ).rows() == [
        ("P1", "89247-1", "ecog", 1.0, "integer", "survey"),
        ("P2", "89243-0", "karnofsky", 80.0, "integer", "survey"),
        ("P3", "89243-0", "lansky", 60.0, "integer", "survey"),
    ]
    assert parsed.quarantined["error"].to_list() == [
        "score out of range for its scale",
        "unknown scale in column 'scale' (ecog, karnofsky, lansky)",
        "non-integer value in column 'score'",
    ]


def test_tumor_measurements_code_dicom_methods_and_reject_other_units(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "tumor_measurements.csv",
        "mrn,measurement_id,size_value,size_unit,method,body_site_code,body_site_text,status,measured_at\n"
        "MRN-0001,T1,23,mm,CT,,Lung,final,2026-10-20\n"
        "MRN-0001,T2,1.8,cm,ct,59441001,Lymph node,final,2026-10-20\n"
        "MRN-0001,T3,12,mm,caliper,,Thigh,,2026-10-20\n"
        "MRN-0001,T4,25,mm,,,Lung,final,2026-10-20\n"
        "MRN-0001,T5,2,in,CT,,Lung,final,2026-10-20\n",
    )
    parsed = parse_csv_file(path, tmp_path)
    tumors = _only(parsed, "observations")
    _assert_invariant(parsed)
    assert set(tumors["loinc"]) == {"21889-1"}
    assert set(tumors["category"]) == {"imaging"}
    assert tumors.select(
        "record_id", "value_numeric", "value_unit", "method_code", "method_system", "method_text"
    ).rows() == [
        ("T1", 23.0, "mm", "CT", "http://dicom.nema.org/resources/ontology/DCM", None),
        ("T2", 1.8, "cm", "CT", "http://dicom.nema.org/resources/ontology/DCM", None),
        ("T3", 12.0, "mm", None, None, "caliper"),
        ("T4", 25.0, "mm", None, None, None),
    ]
    node = _row(tumors, "T2")
    assert (node["body_site_code"], node["body_site_system"], node["body_site_text"]) == (
        "59441001", "http://snomed.info/sct", "Lymph node",
    )  # fmt: skip
    assert _row(tumors, "T1")["body_site_system"] is None
    assert parsed.quarantined.select("source_position", "error").rows() == [
        (5, "size_unit must be mm or cm")
    ]


def test_conditions_map_short_code_systems_to_uris(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "conditions.csv",
        "mrn,condition_id,code_system,code,display,clinical_status,verification_status,"
        "onset_date,recorded_date,abatement_date\n"
        "MRN-0001,C1,icd-10-cm,C49.9,Soft tissue sarcoma,active,confirmed,2024-03-01,,\n"
        "MRN-0001,C2,ICD-O-3,9581/3,Alveolar soft part sarcoma,,,2024-03-01T10:00:00Z,2024-03-02,\n"
        "MRN-0001,C3,snomed,94381002,Secondary malignant neoplasm of liver,Active,,,,\n"
        "MRN-0001,C4,text,,alveolar soft-part sarcoma,,,,,\n"
        "MRN-0001,C5,icd-10-cm,,,,,,,\n"
        "MRN-0001,C6,icd-10-cm,C78.7,Liver metastasis,,,March 2024,,\n",
    )
    parsed = parse_csv_file(path, tmp_path)
    conditions = _only(parsed, "conditions")
    _assert_invariant(parsed)
    assert conditions.select("record_id", "code_system", "code", "code_text").rows() == [
        ("C1", "http://hl7.org/fhir/sid/icd-10-cm", "C49.9", "Soft tissue sarcoma"),
        (
            "C2",
            "http://terminology.hl7.org/CodeSystem/icd-o-3",
            "9581/3",
            "Alveolar soft part sarcoma",
        ),
        ("C3", "http://snomed.info/sct", "94381002", "Secondary malignant neoplasm of liver"),
        ("C4", None, None, "alveolar soft-part sarcoma"),
    ]
    c2 = _row(conditions, "C2")
    assert (c2["onset_at"], c2["recorded_at"]) == (
        dt.datetime(2024, 3, 1, 10),
        dt.datetime(2024, 3, 2),
    )
    assert _row(conditions, "C3")["clinical_status"] == "active"
    assert _row(conditions, "C1")["code_display"] == "Soft tissue sarcoma"
    assert parsed.quarantined["error"].to_list() == [
        "condition has neither code nor display",
        "unparseable or unrepresentable timestamp in column 'onset_date'",
    ]


def test_medications_map_record_types_and_code_systems(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "medications.csv",
        "mrn,medication_id,record_type,code_system,code,name,status,start_date,end_date\n"
        "MRN-0001,M1,request,rxnorm,1792776,atezolizumab,completed,2025-01-10,2025-06-01\n"
        "MRN-0001,M2,statement,atc,J05AR03,,active,2024-02-01T00:00:00Z,\n"
        "MRN-0001,M3,administration,text,,Keytruda,completed,2025-02-01,\n"
        "MRN-0001,M4,,,,pembrolizumab,,2025-02-01,\n"
        "MRN-0001,M5,prescription,rxnorm,1792776,,active,2025-02-01,\n"
        "MRN-0001,M6,request,rxnorm,1792776,,active,,\n",
    )
    parsed = parse_csv_file(path, tmp_path)
    medications = _only(parsed, "medications")
    _assert_invariant(parsed)
    rxnorm, atc = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://www.whocc.no/atc"
    columns = ("record_id", "resource_type", "code_system", "code", "code_text")
    assert medications.select(columns).rows() == [
        ("M1", "MedicationRequest", rxnorm, "1792776", "atezolizumab"),
        ("M2", "MedicationStatement", atc, "J05AR03", None),
        ("M3", "MedicationAdministration", None, None, "Keytruda"),
        ("M4", "MedicationStatement", None, None, "pembrolizumab"),
    ]
    assert _row(medications, "M1")["end_at"] == dt.datetime(2025, 6, 1)
    assert parsed.quarantined["error"].to_list() == [
        "unknown record_type (request, statement, administration)",
        "missing start_date",
    ]


def test_headers_are_case_and_order_insensitive_and_extra_columns_ignored(tmp_path: Path) -> None:
    a = _write(
        tmp_path,
        "vitals.csv",
        "mrn,vital_id,loinc,value,measured_at\nM1,V1,29463-7,70,2026-11-01\n",
    )
    b_dir = tmp_path / "again"
    b_dir.mkdir()
    b = _write(
        b_dir,
        "vitals.csv",
        " Measured_At ,VALUE,loinc,vital_id,MRN,note\n2026-11-01,70,29463-7,V1,M1,\n",
    )
    first = _only(parse_csv_file(a, tmp_path), "observations")
    second = _only(parse_csv_file(b, tmp_path), "observations")
    assert second["source_file"].to_list() == ["again/vitals.csv"]
    assert first.drop("source_file", "record_hash").equals(
        second.drop("source_file", "record_hash")
    )


def test_same_row_hashes_the_same_and_a_changed_row_differently(tmp_path: Path) -> None:
    header = "mrn,vital_id,loinc,value,measured_at\n"
    rows = "M1,V1,29463-7,70,2026-11-01\nM1,V2,29463-7,71,2026-11-02\n"
    first = parse_csv_file(_write(tmp_path, "vitals.csv", header + rows), tmp_path)
    changed = rows.replace(",71,", ",72,")
    second = parse_csv_file(_write(tmp_path, "vitals.2.csv", header + changed), tmp_path)
    h1 = first.tables["observations"]["record_hash"].to_list()
    h2 = second.tables["observations"]["record_hash"].to_list()
    assert h1[0] == h2[0]
    assert h1[1] != h2[1]


# ---------------------------------------------------------------- whole-file problems


def test_missing_required_column_quarantines_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "lab_results.csv", "mrn,loinc,value\nMRN-0001,718-7,12\n")
    parsed = parse_csv_file(path, tmp_path)
    _assert_invariant(parsed)
    assert parsed.tables == {}
    assert parsed.quarantined.select("scope", "source_position", "error").rows() == [
        ("file", None, "missing required column(s): result_id, collected_at")
    ]
    assert parsed.quarantined["raw_payload"][0].startswith("mrn,loinc,value")


def test_truncated_gzip_quarantines_the_file(tmp_path: Path) -> None:
    packed = gzip.compress(LAB_RESULTS.encode() * 50)
    path = tmp_path / "lab_results.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    parsed = parse_csv_file(path, tmp_path)
    _assert_invariant(parsed)
    assert parsed.quarantined.select("scope", "error").rows() == [
        ("file", "truncated or corrupt gzip stream")
    ]


def test_gzipped_contract_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "lab_results.csv.gz"
    path.write_bytes(gzip.compress(LAB_RESULTS.encode()))
    parsed = parse_csv_file(path, tmp_path)
    assert (parsed.records_in, parsed.rows_out, parsed.quarantined.height) == (9, 5, 4)


def test_invalid_utf8_ragged_empty_or_ambiguous_files_are_quarantined_whole(tmp_path: Path) -> None:
    latin1 = tmp_path / "patients.csv"
    latin1.write_bytes("mrn,birth_date,family_name\nMRN-0001,1980-02-29,Müller\n".encode("latin-1"))
    ragged = _write(
        tmp_path, "vitals.csv", "mrn,vital_id,loinc,value,measured_at\nM1,V1,x,1,2026-01-01,extra\n"
    )
    empty = _write(tmp_path, "conditions.csv", "")
    twice = _write(
        tmp_path, "medications.csv", "mrn,MRN,medication_id,start_date\nA,B,M1,2025-01-01\n"
    )
    # bytes that are not UTF-8 are read as U+FFFD: the rows land (per-record containment)
    lands = parse_csv_file(latin1, tmp_path)
    assert lands.quarantined.is_empty()
    assert lands.tables["patients"]["family_name"].to_list() == ["M\ufffdller"]
    errors = []
    for path in (ragged, empty, twice):
        parsed = parse_csv_file(path, tmp_path)
        _assert_invariant(parsed)
        _assert_errors_phi_free(parsed)
        assert parsed.quarantined["scope"].to_list() == ["file"]
        errors.append(parsed.quarantined["error"][0])
    assert errors == [
        "not valid CSV: rows have more fields than the header",
        "empty file: no header row",
        "not valid CSV: duplicate column names in the header",
    ]


def test_unknown_entity_stem_quarantines_the_file(tmp_path: Path) -> None:
    parsed = parse_csv_file(
        _write(tmp_path, "allergies.csv", "mrn,substance\nMRN-0001,latex\n"), tmp_path
    )
    _assert_invariant(parsed)
    [(scope, error)] = parsed.quarantined.select("scope", "error").rows()
    assert scope == "file"
    assert error.startswith("unknown CSV entity: the file name's stem (9 characters, sha256 ")
    assert "allergies" not in error  # a file name may carry a patient's name


def test_unknown_entity_error_never_quotes_the_file_name(tmp_path: Path) -> None:
    name = "Smith_John_1970-01-01_MRNC0001.csv"
    parsed = parse_csv_file(_write(tmp_path, name, "mrn,x\nMRNC0001,1\n"), tmp_path)
    [error] = parsed.quarantined.get_column("error").to_list()
    assert not {"smith", "john", "1970", "mrnc0001"} & set(error.lower().replace("_", " ").split())


def test_header_only_file_yields_an_empty_table(tmp_path: Path) -> None:
    parsed = parse_csv_file(
        _write(tmp_path, "vitals.csv", "mrn,vital_id,loinc,value,measured_at\n"), tmp_path
    )
    _assert_invariant(parsed)
    assert (parsed.records_in, parsed.tables["observations"].height) == (0, 0)


def test_is_csv_file_accepts_csv_and_gzipped_csv() -> None:
    assert is_csv_file(Path("lab_results.csv"))
    assert is_csv_file(Path("drop/lab_results.2026-11-01.CSV.GZ"))
    assert not is_csv_file(Path("Observation.ndjson"))
    assert not is_csv_file(Path("lab_results.csv.bak"))


# ---------------------------------------------------------------- documentation


def test_every_contract_column_is_documented_in_its_section() -> None:
    doc = (REPO / "docs" / "csv_contract.md").read_text(encoding="utf-8")
    columns_part = doc.split("\n## Columns\n", 1)[1].split("\n## ", 1)[0]
    sections = re.split(r"^### ", columns_part, flags=re.MULTILINE)
    by_title = {s.split("\n", 1)[0].strip().strip("`").removesuffix(".csv"): s for s in sections}
    for stem, columns in CSV_FILES.items():
        assert stem in by_title, f"docs/csv_contract.md has no section '### {stem}.csv'"
        for column in columns:
            assert f"| `{column}` |" in by_title[stem], f"{stem}.{column} is not documented"


# ---------------------------------------------------------------- throughput (not asserted)


def _generated_lab_results(path: Path, rows: int) -> None:
    i = pl.int_range(0, rows, eager=True)
    frame = pl.DataFrame(
        {
            "mrn": "MRN-" + (i % 50_000).cast(pl.String).str.zfill(7),
            "result_id": "R" + i.cast(pl.String),
            "loinc": pl.Series(["751-8", "777-3", "718-7", "2160-0"]).gather(i % 4),
            "local_code": pl.Series([None], dtype=pl.String).gather(i * 0),
            "test_name": pl.Series(["ANC", "Platelets", "Hemoglobin", "Creatinine"]).gather(i % 4),
            "value": pl.Series(["<0.5", "150", "11.2", ">5.0", "1.1"]).gather(i % 5),
            "unit": pl.Series(["10*9/L", "10*3/uL", "g/dL", "mg/dL"]).gather(i % 4),
            "ref_low": "0.5",
            "ref_high": "1.2",
            "status": "final",
            "order_id": "O" + (i // 4).cast(pl.String),
            "collected_at": pl.Series(
                [
                    "2026-11-01T08:30:00Z",
                    "2026-11-01T08:30:00+02:00",
                    "2026-11-01 08:30",
                    "2026-11-01",
                ]
            ).gather(i % 4),
            "reported_at": "2026-11-01T12:00:00Z",
        }
    )
    frame.write_csv(path)


def test_throughput_on_generated_lab_results(tmp_path: Path) -> None:
    """Prints rows/s; TRIALSCREEN_CSV_BENCH_ROWS=1000000 for the full-size measurement."""
    rows = int(os.environ.get("TRIALSCREEN_CSV_BENCH_ROWS", "100000"))
    path = tmp_path / "lab_results.csv"
    _generated_lab_results(path, rows)
    started = time.perf_counter()
    parsed = parse_csv_file(path, tmp_path)
    elapsed = time.perf_counter() - started
    assert (parsed.records_in, parsed.rows_out) == (rows, rows)
    mb = path.stat().st_size / 1e6
    print(
        f"\nCSV lab_results: {rows:,} rows, {mb:.1f} MB in {elapsed:.2f} s = "
        f"{rows / elapsed:,.0f} rows/s, {mb / elapsed:.1f} MB/s"
    )


def test_readme_documents_every_csv_contract_column() -> None:
    """The README's CSV contract tables are generated from csv_contract; they cannot drift."""
    from pathlib import Path

    from trialscreen.feeds.csv.contract import CSV_FILES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for stem, columns in CSV_FILES.items():
        section = readme.split(f"**`{stem}.csv`**", 1)
        assert len(section) == 2, stem
        body = section[1].split("**`", 1)[0]
        for column in columns:
            assert f"| `{column}` |" in body, (stem, column)
