"""The hospital time zone end to end (issue 10 item 5, docs/decisions.md "Local time") and
implausible birth dates (issue 9 item 1).

The same drop is screened as of the same date in two zones (UTC and America/New_York):

* E: ANC sent by FHIR with an offset (``Z``) at 02:00 UTC on the first day of the 28-day
  window. In UTC that is inside the window; in New York it is 21:00 the day before,
  outside: ANC becomes unknown. The one-day shift.
* N: ANC sent by HL7 without an offset at 01:00 on the same first day: the hospital's wall
  clock in either zone, so inside the window in both, and its reason prints that date.
* M: ANC mid-window with an offset: no shift.
* B, Z: birth dates 9999-12-31 and 0001-01-01 (CSV): screened with age unknown and a reason
  naming the implausible birth date; the run publishes (one patient never blocks the gate).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from trialscreen import pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow

KEY = "local-time-test-key"
SCREENING_DATE = date(2026, 11, 20)  # labs window: 2026-10-23 .. 2026-11-20


def _patient(pid: str, mrn: str) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "birthDate": "1960-05-01",
        "gender": "female",
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": mrn}],
    }


def _anc(oid: str, pid: str, at: str, value: float) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": at,
        "valueQuantity": {"value": value, "unit": "10*9/L", "code": "10*9/L"},
    }


def _drop(root: Path) -> Path:
    (root / "fhir").mkdir(parents=True)
    resources = [
        _patient("pe", "MRN-E"),
        _anc("anc-e", "pe", "2026-10-23T02:00:00Z", 2.5),
        _patient("pm", "MRN-M"),
        _anc("anc-m", "pm", "2026-11-10T15:00:00+01:00", 3.5),
    ]
    (root / "fhir" / "labs.ndjson").write_text("\n".join(json.dumps(r) for r in resources))
    (root / "hl7").mkdir()
    message = [
        "MSH|^~\\&|LAB|HOSP|TS|HOSP|20261023013000||ORU^R01|C1|P|2.5.1",
        "PID|1||MRN-N^^^HOSP^MR||Doe^Jane||19600501|F",
        "OBR|1||F1|CBC|||20261023010000",
        "OBX|1|NM|751-8^ANC^LN||1.5|10*9/L|||||F|||20261023010000",
    ]
    (root / "hl7" / "labs.hl7").write_text("\r".join(message) + "\r")
    (root / "csv").mkdir()
    (root / "csv" / "patients.csv").write_text(
        "mrn,family_name,given_name,birth_date,sex,deceased_at\n"
        "MRN-B,Roe,Rick,9999-12-31,male,\n"
        "MRN-Z,Poe,Pat,0001-01-01,male,\n"
    )
    return root


def _screen(tmp: Path, drop: Path, zone: str, mp: pytest.MonkeyPatch) -> dict[str, dict]:
    mp.setenv("TRIALSCREEN_TIMEZONE", zone)
    warehouse = tmp / f"{zone.replace('/', '_')}.duckdb"
    result = run_pipeline(drop, SCREENING_DATE, warehouse, reports_dir=tmp / f"r_{zone[:3]}")
    assert result.published, result.message
    keys = {pseudonym.patient_key(m, KEY): m for m in ("MRN-E", "MRN-N", "MRN-M", "MRN-B", "MRN-Z")}
    with Warehouse.connect(warehouse) as wh:
        rows = wh.query(
            "select patient_key, criterion_id, status, reason from marts.criterion_evaluations "
            "where trial_id = 'axiom' and criterion_id in ('anc', 'age')"
        )
        anc = wh.query("select patient_key, anc from marts.screening_results")
    out: dict[str, dict] = {}
    for key, criterion, status, reason in rows:
        out.setdefault(keys[key], {})[criterion] = (status, reason)
    for key, value in anc:
        out.setdefault(keys[key], {})["anc_value"] = value
    return out


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict]]:
    tmp = tmp_path_factory.mktemp("local_time")
    drop = _drop(tmp / "drop")
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    try:
        return {zone: _screen(tmp, drop, zone, mp) for zone in ("UTC", "America/New_York")}
    finally:
        mp.undo()


def test_a_result_sent_with_an_offset_at_the_window_edge_shifts_by_a_day(screened) -> None:
    utc, ny = screened["UTC"]["MRN-E"], screened["America/New_York"]["MRN-E"]
    assert utc["anc"][0] == "met" and utc["anc_value"] == pytest.approx(2.5)
    assert "2026-10-23" in utc["anc"][1]
    # 2026-10-22 21:00 in New York: outside the window, so no ANC counts
    assert ny["anc"][0] == "unknown" and ny["anc_value"] is None


def test_results_without_offset_or_mid_window_do_not_shift(screened) -> None:
    for mrn in ("MRN-N", "MRN-M"):
        assert screened["UTC"][mrn] == screened["America/New_York"][mrn], mrn
    n = screened["UTC"]["MRN-N"]
    assert n["anc"][0] == "met" and "2026-10-23" in n["anc"][1]  # the local date, as sent


def test_implausible_birth_dates_are_screened_with_age_unknown(screened) -> None:
    for zone in screened.values():
        for mrn in ("MRN-B", "MRN-Z"):
            status, reason = zone[mrn]["age"]
            assert status == "unknown", (mrn, status)
            assert "birth date is implausible" in reason
