"""The real Synthea data (the FHIR bundles and the dbt-synthea CSV export in tests/data)
through the whole pipeline. Nobody here wrote it, so the lab values are checked against the
bundles' own JSON, read independently of the parsers."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from trialscreen import pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # whole pipeline on the Synthea data

# the bundles' observations end 2021-03-28 (PROVENANCE.md): screen a few days later
SCREENING_DATE = date(2021, 4, 1)
KEY = "synthea-test-key"


@pytest.fixture(scope="module")
def synthea_run(external_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synthea")
    drop = root / "drop"
    (drop / "fhir").mkdir(parents=True)
    (drop / "csv").mkdir()
    for path in sorted((external_dir / "synthea-smart-r4-bundles" / "bundles").glob("*.gz")):
        shutil.copy(path, drop / "fhir" / path.name)
    for name in ("patients", "observations", "conditions", "medications"):
        shutil.copy(external_dir / "synthea-dbt-synthea-csv" / f"{name}.csv", drop / "csv")
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    try:
        result = run_pipeline(drop, SCREENING_DATE, root / "wh.duckdb", reports_dir=root / "r")
    finally:
        mp.undo()
    return {"root": root, "drop": drop, "result": result, "wh": root / "wh.duckdb"}


def _latest_in_window(
    bundle_dir: Path, loinc: str, higher_is_worse: bool
) -> dict[str, tuple[tuple, float]]:
    """Per MRN, the latest final Observation with this LOINC in the 28-day window, read
    straight from the bundle JSON. Ties on the timestamp (Synthea has them): the
    later-issued, then the worse value (docs/clinical-rules.md#labs-latest-in-window)."""
    start = SCREENING_DATE - timedelta(days=28)
    latest: dict[str, tuple[datetime, float]] = {}
    for path in bundle_dir.glob("*.json.gz"):
        bundle = json.loads(gzip.decompress(path.read_bytes()))
        resources = [e["resource"] for e in bundle.get("entry", [])]
        patients = [r for r in resources if r["resourceType"] == "Patient"]
        if not patients:
            continue
        ids = patients[0]["identifier"]
        mrn = next(
            (
                i["value"]
                for i in ids
                if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR"
            ),
            ids[0]["value"],
        )
        for r in resources:
            if r["resourceType"] != "Observation" or r.get("status") != "final":
                continue
            if not any(c.get("code") == loinc for c in r["code"].get("coding", [])):
                continue
            at = datetime.fromisoformat(r["effectiveDateTime"].replace("Z", "+00:00"))
            if not start <= at.date() <= SCREENING_DATE:
                continue
            value = r["valueQuantity"]["value"]
            issued = datetime.fromisoformat(
                r.get("issued", r["effectiveDateTime"]).replace("Z", "+00:00")
            )
            rank = (at, issued, value if higher_is_worse else -value)
            if mrn not in latest or rank > latest[mrn][0]:
                latest[mrn] = (rank, value)
    return latest


def test_synthea_drop_publishes(synthea_run) -> None:
    result = synthea_run["result"]
    assert result.published, result.message
    assert result.feed_counts["fhir"].quarantined == 0
    assert result.feed_counts["csv"].quarantined == 0


def _alive_and_born(external_dir: Path) -> int:
    """Patients born by and alive on the screening date, counted from the sources' own
    manifest (bundles) and patients.csv (CSV export)."""
    import csv

    def counts(birth: str, death: str) -> bool:
        born = not birth or date.fromisoformat(birth[:10]) <= SCREENING_DATE
        alive = not death or date.fromisoformat(death[:10]) > SCREENING_DATE
        return born and alive

    bundles = external_dir / "synthea-smart-r4-bundles" / "manifest.csv"
    with bundles.open() as handle:
        n = sum(
            counts(r["birthDate"], r["deceasedDateTime"])
            for r in csv.DictReader(handle)
            if r["patient_id"]  # the organisation/practitioner bundles have no patient
        )
    export = external_dir / "synthea-dbt-synthea-csv" / "patients.csv"
    with export.open() as handle:
        n += sum(counts(r["BIRTHDATE"], r["DEATHDATE"]) for r in csv.DictReader(handle))
    return n


def test_most_synthea_patients_are_ineligible_for_lack_of_sarcoma(
    synthea_run, external_dir: Path
) -> None:
    with Warehouse.connect(synthea_run["wh"]) as wh:
        rows = dict(
            wh.query(
                "select candidate_status, count(*) from marts.screening_results "
                "where cohort_id = 'asps' group by 1"
            )
        )
        no_asps = wh.scalar(
            "select count(*) from marts.criterion_evaluations "
            "where criterion_id = 'diagnosis_asps' and status = 'not_met'"
        )
    screened = _alive_and_born(external_dir)
    assert 20 < screened < 16 + 27  # the deceased and the not-yet-born are not screened
    assert sum(rows.values()) == screened
    assert rows.get("ineligible") == screened
    assert no_asps == screened


@pytest.mark.parametrize(
    ("loinc", "column", "transform"),
    [
        ("38483-4", "creatinine_x_uln", "uln"),  # creatinine in blood, Synthea's code
        ("2947-0", "sodium", "value"),  # sodium in blood, Synthea's code
    ],
)
def test_synthea_lab_values_match_the_bundles(synthea_run, loinc, column, transform) -> None:
    expected = _latest_in_window(synthea_run["drop"] / "fhir", loinc, transform == "uln")
    assert len(expected) >= 5, f"too few {loinc} results in the window to spot-check"
    checked = 0
    keys = {pseudonym.patient_key(mrn, KEY): v for mrn, (_, v) in expected.items()}
    with Warehouse.connect(synthea_run["wh"]) as wh:
        got = dict(
            wh.query(
                f"select patient_key, {column} from marts.screening_results "
                "where cohort_id = 'safety_run_in' and trial_id = 'axiom'"
            )
        )
    for key, value in keys.items():
        if key not in got:  # died before the screening date: not screened
            continue
        want = value / 1.2 if transform == "uln" else value  # Synthea sends no range: the
        # institutional creatinine ULN (1.2 mg/dL, seed) applies
        assert got[key] == pytest.approx(want, rel=1e-6), (column, key)
        checked += 1
    assert checked >= 5
