"""Tumour measurements as mCODE sends them (issue 10 item 6; docs/decisions.md "Tumour
measurements as mCODE sends them"): each shape in each feed that carries it, through the real
parser (FHIR NDJSON, HL7 v2 ORU, CSV tumor_measurements) into the raw tables, then one dbt
build (shared with the other scenario modules: tests/dbt/conftest.py ``scenario_wh``); each
test reads marts.criterion_evaluations for one patient.

Every patient is the baseline of test_criteria_scenarios without its CT lesion, plus the
measurements of its shape (screening date 2026-11-02, measurements on 2026-10-20).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.dbt.test_criteria_scenarios import evaluation
from tests.dbt.test_issue11_scenarios import Scenarios
from trialscreen.feeds.csv import parse_csv_file
from trialscreen.feeds.fhir import parse_fhir_file
from trialscreen.feeds.hl7v2 import parse_hl7_file

pytestmark = pytest.mark.slow

LOINC, SCT = "http://loinc.org", "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _qty(value: float, unit: str = "mm") -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def _component(code: str, value: float, unit: str = "mm") -> dict[str, Any]:
    coding = [{"system": LOINC, "code": code}]
    return {"code": {"coding": coding}, "valueQuantity": _qty(value, unit)}


def _fhir(mrn: str, n: int, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"tum-{mrn}-{n}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "21889-1"}]},
        "subject": {"reference": f"Patient/{mrn}"},
        "effectiveDateTime": "2026-10-20T10:00:00Z",
    }
    r.update(kw)
    return r


def _method(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# (mrn, resources): FHIR NDJSON shapes
FHIR: list[tuple[str, list[dict[str, Any]]]] = [
    # mCODE: components only, nodal by SNOMED axillary node, short axis 16 mm -> measurable
    ("FCOMPNODE", [_fhir("FCOMPNODE", 1, method=_method(SCT, "77477000"),
                         bodySite=_method(SCT, "68171009"),
                         component=[_component("33728-7", 2.6, "cm"),
                                    _component("33729-5", 16)])]),
    # components, non-nodal, longest 12 mm by SNOMED MRI -> measurable
    ("FCOMP", [_fhir("FCOMP", 1, method=_method(SCT, "113091000"),
                     component=[_component("33728-7", 12), _component("33729-5", 4)])]),
    # components, nodal, longest 22 mm only: the short axis is not recorded -> unknown
    ("FCOMPLONG", [_fhir("FCOMPLONG", 1, method=_method(DCM, "CT"),
                         bodySite=_method(SCT, "59441001"),
                         component=[_component("33728-7", 22)])]),
    # a local method coding first, SNOMED second: the SNOMED one is read
    ("FSCTSECOND", [_fhir("FSCTSECOND", 1, valueQuantity=_qty(14),
                          method={"coding": [{"system": "urn:local", "code": "X1"},
                                             {"system": SCT, "code": "77477000"}]})]),
    ("FULTRA", [_fhir("FULTRA", 1, valueQuantity=_qty(30), method=_method(SCT, "16310003"))]),
    ("FNOM25", [_fhir("FNOM25", 1, valueQuantity=_qty(25))]),
    ("FNOM15", [_fhir("FNOM15", 1, valueQuantity=_qty(15))]),
    ("FNOM8", [_fhir("FNOM8", 1, valueQuantity=_qty(8))]),
    # nodal by text only, no method, 16 mm short axis -> measurable (nodal rule 15 mm)
    ("FNODETEXT", [_fhir("FNODETEXT", 1, valueQuantity=_qty(16),
                         bodySite={"text": "Left inguinal lymph node"})]),
    # two measurements: 8 mm by CT (not measurable) and 15 mm without method (undecided)
    ("FMIXED", [_fhir("FMIXED", 1, valueQuantity=_qty(8), method=_method(DCM, "CT")),
                _fhir("FMIXED", 2, valueQuantity=_qty(15))]),
    # two measurements both decided not measurable -> not_met
    ("FBOTHSMALL", [_fhir("FBOTHSMALL", 1, valueQuantity=_qty(8), method=_method(DCM, "CT")),
                    _fhir("FBOTHSMALL", 2, valueQuantity=_qty(15), method=_method(DCM, "DX"))]),
]  # fmt: skip

HL7_OBX = {
    # OBX-17 SNOMED method, OBX-20 SNOMED nodal site: the value is the short axis
    "HSCTNODE": "NM|21889-1^Size Tumor^LN||17|mm|||||F|||20261020100000|||77477000^CT^SCT|||"
    "68171009^Axillary lymph node^SCT",
    "HULTRA": "NM|21889-1^Size Tumor^LN||16|mm|||||F|||20261020100000|||US^Ultrasound^DCM",
    "HNOM25": "NM|21889-1^Size Tumor^LN||25|mm|||||F|||20261020100000",
    "HNOM15": "NM|21889-1^Size Tumor^LN||15|mm|||||F|||20261020100000",
    "HNOM8": "NM|21889-1^Size Tumor^LN||8|mm|||||F|||20261020100000",
    "HNODETEXT": "NM|21889-1^Size Tumor^LN||12|mm|||||F|||20261020100000|||CT^CT^DCM|||"
    "^Mediastinal lymph node",
}

CSV_ROWS = {
    # mrn: size_value, size_unit, method, body_site_code, body_site_text, short_axis_value
    "CSCTMETHOD": ("1.2", "cm", "77477000", "", "", ""),
    "CSHORTAXIS": ("31", "mm", "CT", "62683002", "", "16"),
    "CSHORTSMALL": ("31", "mm", "CT", "", "Right axillary lymph node", "11"),
    "CULTRA": ("40", "mm", "US", "", "", ""),
    "CNOM25": ("25", "mm", "", "", "", ""),
    "CNOM15": ("15", "mm", "", "", "", ""),
    "CNOM8": ("8", "mm", "", "", "", ""),
}


def _parsed_rows(tmp: Path) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    fhir_dir = tmp / "fhir"
    fhir_dir.mkdir()
    mrn_of: dict[str, str] = {}
    with (fhir_dir / "Observation.ndjson").open("w") as f:
        for mrn, resources in FHIR:
            for r in resources:
                mrn_of[r["id"]] = mrn
                f.write(json.dumps(r) + "\n")
    parsed = parse_fhir_file(fhir_dir / "Observation.ndjson", fhir_dir)
    assert parsed.quarantined.height == 0
    for row in parsed.tables["observations"].to_dicts():
        row["mrn"] = mrn_of[row["record_id"]]  # staging resolves Patient/<id>; here by hand
        rows.append(("fhir", row))
    hl7_dir = tmp / "hl7"
    hl7_dir.mkdir()
    messages = []
    for i, (mrn, obx) in enumerate(HL7_OBX.items()):
        messages.append(
            f"MSH|^~\\&|RIS|HOSP|TS|TS|20261020120000||ORU^R01|T{i}|P|2.5.1\r"
            f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19860510|M\r"
            f"OBR|1||F{i}|24627-2^CT chest^LN|||20261020100000\rOBX|1|{obx}\r"
        )
    (hl7_dir / "tumor.hl7").write_text("".join(messages))
    parsed = parse_hl7_file(hl7_dir / "tumor.hl7", hl7_dir)
    assert parsed.quarantined.height == 0
    rows += [("hl7", row) for row in parsed.tables["observations"].to_dicts()]
    csv_dir = tmp / "csv"
    csv_dir.mkdir()
    lines = [
        "mrn,measurement_id,size_value,size_unit,method,body_site_code,body_site_text,"
        "short_axis_value,status,measured_at"
    ]
    for mrn, (size, unit, method, site, text, short) in CSV_ROWS.items():
        lines.append(f"{mrn},tum-{mrn},{size},{unit},{method},{site},{text},{short},final,"
                     "2026-10-20T10:00:00Z")  # fmt: skip
    (csv_dir / "tumor_measurements.csv").write_text("\n".join(lines) + "\n")
    parsed = parse_csv_file(csv_dir / "tumor_measurements.csv", csv_dir)
    assert parsed.quarantined.height == 0
    rows += [("csv", row) for row in parsed.tables["observations"].to_dicts()]
    return rows


def scenarios(tmp: Path) -> Scenarios:
    """The baseline patients of the shapes, with their measurements as the parsers land them
    (the parsers write their files under ``tmp``); record ids from 300,000 up, apart from the
    other modules sharing the build (tests/dbt/conftest.py ``scenario_wh``)."""
    s = Scenarios()
    s._n = 300_000
    for mrn in [m for m, _ in FHIR] + list(HL7_OBX) + list(CSV_ROWS):
        s.baseline(mrn, tumor=True)
    for feed, row in _parsed_rows(tmp):
        s.add(feed, "observations", row)
    return s


@pytest.fixture(scope="module")
def wh(scenario_wh: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The session's shared scenario warehouse (these patients are in it)."""
    return scenario_wh


@pytest.mark.parametrize(
    ("mrn", "status", "value", "in_reason"),
    [
        ("FCOMPNODE", "met", 16.0, "Nodal lesion 16 mm short axis by CT"),
        ("FCOMP", "met", 12.0, "by MRI on 2026-10-20 ≥ 10 mm: measurable"),
        ("FCOMPLONG", "unknown", 22.0, "short axis not recorded"),
        ("FSCTSECOND", "met", 14.0, "by CT"),
        ("FULTRA", "unknown", 30.0, "by ultrasound on 2026-10-20: not accepted by RECIST 1.1"),
        ("FNOM25", "met", 25.0, "imaging method not recorded, measurable by every method"),
        ("FNOM15", "unknown", 15.0, "imaging method not recorded (0 of 1 measurement"),
        ("FNOM8", "not_met", 8.0, "not measurable by any method"),
        ("FNODETEXT", "met", 16.0, "Nodal lesion 16 mm short axis"),
        ("FMIXED", "unknown", 15.0, "(0 of 2 measurements measurable, 1 undecided)"),
        ("FBOTHSMALL", "not_met", 15.0, "by chest x-ray on 2026-10-20 < 20 mm"),
        ("HSCTNODE", "met", 17.0, "Nodal lesion 17 mm short axis by CT"),
        ("HULTRA", "unknown", 16.0, "by ultrasound"),
        ("HNOM25", "met", 25.0, "imaging method not recorded"),
        ("HNOM15", "unknown", 15.0, "imaging method not recorded"),
        ("HNOM8", "not_met", 8.0, "imaging method not recorded"),
        ("HNODETEXT", "not_met", 12.0, "Nodal lesion 12 mm short axis by CT"),
        ("CSCTMETHOD", "met", 12.0, "by CT"),
        ("CSHORTAXIS", "met", 16.0, "Nodal lesion 16 mm short axis by CT"),
        ("CSHORTSMALL", "not_met", 11.0, "< 15 mm: not measurable"),
        ("CULTRA", "unknown", 40.0, "not accepted by RECIST 1.1 for measurement"),
        ("CNOM25", "met", 25.0, "imaging method not recorded"),
        ("CNOM15", "unknown", 15.0, "to confirm: the imaging method"),
        ("CNOM8", "not_met", 8.0, "imaging method not recorded"),
    ],
)
def test_tumour_measurement_shape(wh, mrn, status, value, in_reason):
    row = evaluation(wh, mrn, "measurable_disease")
    assert (row["status"], row["value_numeric"]) == (status, value), row["reason"]
    assert in_reason in row["reason"], row["reason"]


def test_method_text_never_reaches_the_reason(wh):
    """HL7 OBX-17 text ("Ultrasound") is sender text: the reason names the seed's method."""
    row = evaluation(wh, "HULTRA", "measurable_disease")
    assert "Ultrasound" not in row["reason"] and "DCM" not in row["reason"]
