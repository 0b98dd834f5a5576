"""Per-record containment (issue 9 item 1, docs/decisions.md "Per-record containment" and
"Timestamps as sent"): every value a hostile or unlucky feed can carry either lands or
quarantines that record, with file, position and a specific reason; never the whole feed.

The probes: a timestamp whose instant leaves year 9999 (``9999-12-31T23:59:59-14:00``
aborted the feed with ``year 10000 is out of range``), year 0, an offset beyond ±18 h, a
number that overflows a double, a NUL byte, a cell that is literally ``\\N`` (PostgreSQL
COPY turned it into NULL) and invalid UTF-8 — in each feed that can carry it, landed on
DuckDB and (NUL, ``\\N``) on a real PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from trialscreen.ingest import ingest
from trialscreen.run_ids import new_run_id
from trialscreen.warehouse import Warehouse

EDGE = "9999-12-31T23:59:59-14:00"


def _obs(rid: str, effective: str, value: object = 5.0, text: str = "ANC") -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}], "text": text},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": effective,
        "valueQuantity": {"value": value, "unit": "10*9/L"},
    }


def _fhir(drop: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01",
               "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "\\N"}]}  # fmt: skip
    lines = [
        json.dumps(patient),
        json.dumps(_obs("o-good", "2026-11-01T08:00:00+02:00")),
        json.dumps(_obs("o-edge", EDGE)),
        json.dumps(_obs("o-year0", "0000-01-01T00:00:00Z")),
        json.dumps(_obs("o-offset", "2026-11-01T08:00:00+19:00")),
        json.dumps(_obs("o-nul", "2026-11-01T08:00:00Z", text="AN\u0000C")),
    ]
    # a number beyond a double (JSON allows it; it overflows to inf) and invalid UTF-8
    lines.append(json.dumps(_obs("o-inf", "2026-11-01T08:00:00Z", 7.0)).replace("7.0", "1e999"))
    body = "\n".join(lines).encode() + b"\n"
    body += (
        json.dumps(_obs("o-utf8", "2026-11-01T08:00:00Z", text="XX"))
        .encode()
        .replace(b"XX", b"A\xff\xfeC")
        + b"\n"
    )
    (drop / "fhir").mkdir(parents=True)
    (drop / "fhir" / "Observation.ndjson").write_bytes(body)


def _hl7(drop: Path) -> None:
    def obx(n: int, value: str, when: str, vt: str = "NM") -> str:
        return f"OBX|{n}|{vt}|751-8^ANC^LN||{value}|10*9/L|||||F|||{when}"

    segments = [
        "MSH|^~\\&|LAB|HOSP|TS|HOSP|20261101080000||ORU^R01|C1|P|2.5.1",
        "PID|1||\\N^^^HOSP^MR||Doe^Jane||19600101|F",
        "OBR|1||F1|CBC|||20261101080000",
        obx(1, "5.0", "20261101080000"),  # no offset: the hospital's wall clock
        obx(2, "5.0", "99991231235959-1400"),
        obx(3, "5.0", "00000101000000"),
        obx(4, "5.0", "20261101080000+1900"),
        obx(5, "1" + "0" * 400, "20261101080000-0500"),  # overflows a double
        obx(6, "AN\x00C", "20261101080000", vt="ST"),
        obx(7, "A\udcff\udcfeC", "20261101080000", vt="ST"),
    ]
    (drop / "hl7").mkdir(parents=True)
    data = "\r".join(segments).encode("utf-8", errors="surrogateescape") + b"\r"
    (drop / "hl7" / "labs.hl7").write_bytes(data)


_LAB_HEADER = (
    "mrn,result_id,loinc,local_code,test_name,value,unit,value_code,value_code_system,"
    "ref_low,ref_high,ref_range,abnormal_flag,status,order_id,collected_at,reported_at\n"
)


def _csv(drop: Path) -> None:
    (drop / "csv").mkdir(parents=True)
    rows = [
        ("\\N", "R1", "5.0", "2026-11-01T08:00:00"),
        ("MRN-1", "R2", "5.0", EDGE),
        ("MRN-1", "R3", "5.0", "0000-01-01T00:00:00Z"),
        ("MRN-1", "R4", "5.0", "2026-11-01T08:00:00+19:00"),
        ("MRN-1", "R5", "1e999", "2026-11-01T08:00:00Z"),
        ("MRN-1", "R6", "AN\x00C", "2026-11-01T08:00:00Z"),
    ]
    text = _LAB_HEADER + "".join(
        f"{mrn},{rid},751-8,,ANC,{value},10*9/L,,,,,,,final,O1,{at},\n"
        for mrn, rid, value, at in rows
    )
    # invalid UTF-8 in a cell
    body = (
        text.encode()
        + b"MRN-1,R7,751-8,,A\xff\xfeC,5.0,10*9/L,,,,,,,final,O1,2026-11-01T08:00:00Z,\n"
    )
    (drop / "csv" / "lab_results.csv").write_bytes(body)
    (drop / "csv" / "patients.csv").write_text(
        "mrn,family_name,given_name,birth_date,sex,deceased_at\n"
        "\\N,Doe,Jane,1960-01-01,female,\n"
        f"MRN-1,Roe,Rick,1960-01-01,male,{EDGE}\n"
        "MRN-2,Poe,Pat,0001-01-01,male,\n"
    )


@pytest.fixture()
def drop(tmp_path: Path) -> Path:
    root = tmp_path / "drop"
    _fhir(root)
    _hl7(root)
    _csv(root)
    return root


def _quarantine(wh: Warehouse) -> list[tuple]:
    return wh.query("select feed, source_file, source_position, error from quarantine.records")


def _land(warehouse: str | Path, drop: Path) -> tuple[dict, dict, list[tuple], Warehouse]:
    wh = Warehouse.connect(warehouse)
    counts = ingest(wh, drop, new_run_id())
    rows = _quarantine(wh)
    return counts, {(r[0], r[1], r[2]): r[3] for r in rows}, rows, wh


def _check(counts: dict, q: dict[tuple[str, str, int], str], rows: list[tuple]) -> None:
    for feed, c in counts.items():
        assert c.balanced, (feed, c)  # records_in = loaded + duplicates + quarantined
        assert c.files_quarantined == 0, feed  # no probe takes a whole file down

    fhir = {pos: err for (feed, _, pos), err in q.items() if feed == "fhir"}
    assert "not a valid date/time" in fhir[3]  # 9999-12-31T23:59:59-14:00
    assert "not a valid date/time" in fhir[4]  # year 0
    assert "not a valid date/time" in fhir[5]  # +19:00
    assert fhir[6] == "observations record: field code_display contains a NUL byte"
    assert fhir[7] == "line is not valid JSON"  # 1e999: refused by the JSON reader, alone
    assert 8 not in fhir  # invalid UTF-8: decoded with U+FFFD, the record lands

    hl7 = [err for feed, _, _, err in rows if feed == "hl7"]
    assert sum("observation time (OBX-14) is not an HL7 timestamp" in e for e in hl7) == 3
    assert "observations record: field value_numeric is not a finite number" in hl7
    assert "observations record: field value_text contains a NUL byte" in hl7

    labs = {pos: err for (feed, f, pos), err in q.items() if f == "csv/lab_results.csv"}
    bad_ts = "unparseable or unrepresentable timestamp in column 'collected_at'"
    assert labs[2] == labs[3] == labs[4] == bad_ts
    assert labs[5] == "observations record: field value_numeric is not a finite number"
    assert labs[6] == "observations record: field value_text contains a NUL byte"
    assert 1 not in labs and 7 not in labs  # `\N` and invalid UTF-8 land
    patients = {pos: err for (feed, f, pos), err in q.items() if f == "csv/patients.csv"}
    assert patients == {2: "unparseable or unrepresentable timestamp in column 'deceased_at'"}
    for error in q.values():  # never a value in an error text
        assert "9999" not in error and "\\N" not in error and "Jane" not in error


def _landed(wh: Warehouse) -> None:
    # `\N` stays text (an MRN), the invalid bytes arrive replaced, the wall clock as sent
    mrns = {r[0] for r in wh.query("select mrn from raw.csv_patients")}
    assert "\\N" in mrns and None not in mrns
    assert wh.query("select count(*) from raw.csv_observations where mrn = '\\N'")[0][0] == 1
    assert wh.query("select count(*) from raw.hl7_patients where mrn = '\\N'")[0][0] == 1
    assert wh.query("select count(*) from raw.fhir_patients where mrn = '\\N'")[0][0] == 1
    fhir = wh.query(
        "select effective_at, effective_at_offset_min from raw.fhir_observations "
        "where record_id = 'o-good'"
    )
    assert fhir == [(datetime(2026, 11, 1, 8, 0), 120)]
    hl7 = wh.query(
        "select effective_at, effective_at_offset_min from raw.hl7_observations "
        "where value_numeric = 5.0"
    )
    assert hl7 == [(datetime(2026, 11, 1, 8, 0), None)]
    texts = {r[0] for r in wh.query("select code_display from raw.fhir_observations")}
    assert "A\ufffd\ufffdC" in texts


def test_probes_land_or_quarantine_one_record_duckdb(drop: Path, tmp_path: Path) -> None:
    counts, q, rows, wh = _land(tmp_path / "wh.duckdb", drop)
    try:
        _check(counts, q, rows)
        _landed(wh)
    finally:
        wh.close()


@pytest.mark.postgres
def test_probes_land_or_quarantine_one_record_postgres(drop: Path, pg_database: str) -> None:
    counts, q, rows, wh = _land(pg_database, drop)
    try:
        _check(counts, q, rows)
        _landed(wh)
    finally:
        wh.close()
