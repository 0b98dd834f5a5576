"""FHIR R4 parser against the Synthea SMART bundles kept in tests/data (known answers counted
from the bundles' JSON with the standard library, and from manifest.csv) and small broken
NDJSON/Bundle files built in tmp_path."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.fhir import is_fhir_file, parse_fhir_file

BUNDLES = "synthea-smart-r4-bundles"
ADAN = "Adan_Pulido_7694b55e-b670-44a5-b426-c56027e97986.json.gz"

# the trial labs PROVENANCE.md counts (over the whole source set; recounted here per file)
TRIAL_LOINCS = (
    *("38483-4", "2947-0", "718-7", "777-3", "6690-2", "1975-2", "1920-8", "1742-6", "1751-7"),
    *("33914-3", "29463-7", "8302-2"),
)
VALUE_TYPES = {
    "valueQuantity": "quantity",
    "valueCodeableConcept": "coded",
    "valueString": "string",
}


def assert_balanced(result: ParsedFile) -> None:
    """records_in == rows out + quarantined, and every frame matches the contract."""
    assert result.records_in == result.rows_out + result.quarantined.height
    assert set(result.tables) == set(schema.ENTITIES)
    for entity, frame in result.tables.items():
        assert frame.schema == pl.Schema(schema.RAW_COLUMNS[entity])
    assert result.quarantined.schema == pl.Schema(schema.QUARANTINE_COLUMNS)


# ---------------------------------------------------------------------------------------
# The Synthea bundles kept in tests/data (patients + the organisation/practitioner bundles)


@pytest.fixture(scope="module")
def bundle_dir(external_dir: Path) -> Path:
    return external_dir / BUNDLES / "bundles"


def _utc(text: str) -> dt.datetime:
    at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo else at


@pytest.fixture(scope="module")
def bundle_facts(bundle_dir: Path) -> dict[str, Any]:
    """What the bundles hold, counted from their JSON with the standard library only (an
    oracle independent of the parser)."""
    kinds: Counter[str] = Counter()
    value_types: Counter[str] = Counter()
    statuses: set[str] = set()
    effective: list[dt.datetime] = []
    loinc_rows: Counter[str] = Counter()
    loinc_patients: dict[str, set[str]] = {}
    for path in sorted(bundle_dir.glob("*.json.gz")):
        for entry in json.loads(gzip.decompress(path.read_bytes())).get("entry", []):
            resource = entry["resource"]
            kinds[resource["resourceType"]] += 1
            if resource["resourceType"] != "Observation":
                continue
            value_types.update(VALUE_TYPES[k] for k in resource if k in VALUE_TYPES)
            statuses.add(resource["status"])
            effective.append(_utc(resource["effectiveDateTime"]))
            patient = resource["subject"]["reference"].removeprefix("urn:uuid:")
            for code in {c["code"] for c in resource["code"]["coding"]}:
                loinc_rows[code] += 1
                loinc_patients.setdefault(code, set()).add(patient)
    return {
        "kinds": kinds,
        "value_types": value_types,
        "statuses": statuses,
        "effective": (min(effective), max(effective)),
        "loinc": {code: (n, len(loinc_patients[code])) for code, n in loinc_rows.items()},
    }


@pytest.fixture(scope="module")
def parsed_bundles(bundle_dir: Path) -> list[ParsedFile]:
    paths = sorted(bundle_dir.glob("*.json.gz"))
    start = time.perf_counter()
    results = [parse_fhir_file(p, bundle_dir) for p in paths]
    seconds = time.perf_counter() - start
    raw_mb = sum(len(gzip.decompress(p.read_bytes())) for p in paths) / 1e6
    gz_mb = sum(p.stat().st_size for p in paths) / 1e6
    print(
        f"\nFHIR bundles: {len(paths)} files, {raw_mb:.1f} MB JSON ({gz_mb:.1f} MB gz) in "
        f"{seconds:.2f} s = {raw_mb / seconds:.0f} MB/s uncompressed"
    )
    return results


def _concat(results: list[ParsedFile], entity: str) -> pl.DataFrame:
    return pl.concat([r.tables[entity] for r in results])


def test_all_synthea_bundles_parse_without_quarantine(parsed_bundles: list[ParsedFile]) -> None:
    assert len(parsed_bundles) == 18  # 16 patients + organisations + practitioners (README)
    for result in parsed_bundles:
        assert_balanced(result)
        assert result.quarantined.height == 0, result.source_file


def test_bundle_totals_match_the_json(
    parsed_bundles: list[ParsedFile], bundle_facts: dict[str, Any]
) -> None:
    kinds = bundle_facts["kinds"]
    obs = _concat(parsed_bundles, "observations")
    assert obs.height == kinds["Observation"] > 3_000
    assert _concat(parsed_bundles, "conditions").height == kinds["Condition"]
    meds = _concat(parsed_bundles, "medications")
    requests = meds.filter(pl.col("resource_type") == "MedicationRequest")
    assert requests.height == kinds["MedicationRequest"]
    counts = dict(obs.get_column("value_type").value_counts().iter_rows())
    for value_type in ("quantity", "coded", "string"):
        assert counts.get(value_type, 0) == bundle_facts["value_types"][value_type], value_type
    assert obs.get_column("status").unique().to_list() == ["final"]
    assert bundle_facts["statuses"] == {"final"}
    first, last = bundle_facts["effective"]
    assert obs.get_column("effective_at").min() == first
    assert obs.get_column("effective_at").max() == last
    assert last.date() <= dt.date(2021, 3, 28)  # PROVENANCE.md: observations end 2021-03-28


def test_observation_counts_per_loinc_match_the_json(
    parsed_bundles: list[ParsedFile], bundle_facts: dict[str, Any]
) -> None:
    obs = _concat(parsed_bundles, "observations")
    per_code = obs.group_by("loinc").agg(pl.len(), pl.col("patient_ref").n_unique())
    found = {row[0]: (row[1], row[2]) for row in per_code.iter_rows()}
    for code in TRIAL_LOINCS:
        assert found[code] == bundle_facts["loinc"][code], code
    # PROVENANCE: not present in this data set
    assert not set(found) & {"2160-0", "2951-2", "751-8", "26499-4", "89247-1", "89243-0"}


def test_patients_match_manifest_and_have_an_mrn(
    parsed_bundles: list[ParsedFile], external_dir: Path
) -> None:
    patients = _concat(parsed_bundles, "patients")
    assert patients.height == 16
    assert patients.get_column("mrn").null_count() == 0
    with (external_dir / BUNDLES / "manifest.csv").open(newline="") as fh:
        manifest = {row["patient_id"]: row for row in csv.DictReader(fh)}
    by_file = {r.source_file: r for r in parsed_bundles}
    for row in patients.iter_rows(named=True):
        expected = manifest[row["patient_ref"]]
        assert row["sex"] == expected["gender"]
        assert row["birth_date"].isoformat() == expected["birthDate"]
        deceased = expected["deceasedDateTime"]
        assert row["deceased_at"] == (
            dt.datetime.fromisoformat(deceased).replace(tzinfo=None) if deceased else None
        )
        parsed = by_file[expected["file"]]
        assert parsed.tables["observations"].height == int(expected["n_observations"])
        assert parsed.tables["conditions"].height == int(expected["n_conditions"])


def test_bundle_urn_references_resolve_to_patient_ids(parsed_bundles: list[ParsedFile]) -> None:
    patient_ids = _concat(parsed_bundles, "patients").get_column("patient_ref").implode()
    for entity in ("observations", "conditions", "medications"):
        frame = _concat(parsed_bundles, entity)
        assert frame.get_column("patient_ref").is_in(patient_ids).all(), entity
        assert frame.get_column("mrn").null_count() == frame.height


def test_mrn_is_the_mr_typed_identifier(parsed_bundles: list[ParsedFile]) -> None:
    adan = next(r for r in parsed_bundles if r.source_file == ADAN)
    patient = adan.tables["patients"].row(0, named=True)
    # identifier[0] is the Synthea id; identifier[1] is typed MR (same text for Synthea)
    assert patient["mrn"] == "7694b55e-b670-44a5-b426-c56027e97986"
    assert patient["patient_ref"] == "d39173c2-7dc5-4a08-aba0-3f14f6b70d94"


def test_unused_resource_types_are_counted_not_loaded(parsed_bundles: list[ParsedFile]) -> None:
    adan = next(r for r in parsed_bundles if r.source_file == ADAN)
    assert adan.ignored["Encounter"] == 32
    assert adan.ignored["Claim"] == 44
    hospital = next(r for r in parsed_bundles if r.source_file.startswith("hospital"))
    assert hospital.records_in == 0 and hospital.ignored == {"Organization": 102}


def test_bundle_record_hash_is_sha256_of_sorted_resource(bundle_dir: Path) -> None:
    result = parse_fhir_file(bundle_dir / ADAN, bundle_dir)
    doc = orjson.loads(gzip.decompress((bundle_dir / ADAN).read_bytes()))
    entry = doc["entry"][0]["resource"]
    text = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    row = result.tables["patients"].row(0, named=True)
    assert row["record_hash"] == hashlib.sha256(text).hexdigest()
    assert row["source_position"] == 1 and row["source_file"] == ADAN


# ---------------------------------------------------------------------------------------
# NDJSON and broken inputs (built in tmp_path from real Synthea resources)


def _resources(bundle_dir: Path, resource_type: str) -> list[dict[str, object]]:
    doc = orjson.loads(gzip.decompress((bundle_dir / ADAN).read_bytes()))
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == resource_type]


def _ndjson(lines: list[bytes | dict[str, object]]) -> bytes:
    return b"\n".join(x if isinstance(x, bytes) else orjson.dumps(x) for x in lines) + b"\n"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _obs(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-02T08:30:00+02:00",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("name", ["Observation.ndjson", "Observation.000.ndjson.gz"])
def test_non_json_line_is_quarantined_with_its_line_number(
    name: str, bundle_dir: Path, tmp_path: Path
) -> None:
    observations = _resources(bundle_dir, "Observation")  # 365 (manifest.csv)
    lines: list[bytes | dict[str, object]] = [*observations[:99], b"{not json", *observations[99:]]
    result = parse_fhir_file(_write(tmp_path / name, _ndjson(lines)), tmp_path)
    assert_balanced(result)
    assert result.tables["observations"].height == 365
    q = result.quarantined.row(0, named=True)
    assert result.quarantined.height == 1
    assert (q["scope"], q["source_position"], q["raw_payload"]) == ("record", 100, "{not json")
    assert q["error"] == "line is not valid JSON" and q["source_file"] == name
    positions = result.tables["observations"].get_column("source_position")
    assert 100 not in positions.to_list() and positions.max() == 366


def test_ndjson_record_hash_is_sha256_of_the_line(tmp_path: Path) -> None:
    line = orjson.dumps(_obs())
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", line + b"\n"), tmp_path)
    assert result.tables["observations"].item(0, "record_hash") == hashlib.sha256(line).hexdigest()


def test_observation_without_subject_is_quarantined(tmp_path: Path) -> None:
    data = _ndjson([_obs(), _obs(id="obs-2", subject=None)])
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", data), tmp_path)
    assert_balanced(result)
    assert result.tables["observations"].get_column("record_id").to_list() == ["obs-1"]
    q = result.quarantined.row(0, named=True)
    assert (q["source_position"], q["error"]) == (2, "observation has no subject reference")


def test_truncated_gzip_is_one_file_quarantine_row(bundle_dir: Path, tmp_path: Path) -> None:
    data = gzip.compress(_ndjson(_resources(bundle_dir, "Observation")))
    path = tmp_path / "Observation.ndjson.gz"
    path.write_bytes(data[: len(data) // 2])
    result = parse_fhir_file(path, tmp_path)
    assert_balanced(result)
    assert result.rows_out == 0 and result.records_in == 1
    q = result.quarantined.row(0, named=True)
    assert (q["scope"], q["source_position"]) == ("file", None)
    assert q["error"] == "gzip stream is truncated"
    assert q["raw_payload"].startswith('{"resourceType":"Observation"')  # what could be read
    assert len(q["raw_payload"].encode()) <= 64 * 1024 * 3  # 64 KiB of bytes, as text


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("bundle.json", b"<html>not json</html>", "file is not valid JSON"),
        ("bundle.json", b"", "file is empty"),
        ("Observation.ndjson", b"\n\n", "file is empty"),
        ("bundle.json", b"[1, 2]", "file is not a FHIR resource or Bundle (no resourceType)"),
        ("bundle.json.gz", b"\x00\x01 not gzip", "not a valid gzip file"),
        (
            "Patient.ndjson",
            b"MSH|^~\\&|LAB\rPID|1||123^^^H^MR\n",
            "no line of the file is valid JSON",
        ),
    ],
)
def test_unreadable_file_is_quarantined_as_a_file(
    name: str, content: bytes, error: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = parse_fhir_file(path, tmp_path)
    assert_balanced(result)
    assert result.quarantined.get_column("scope").to_list() == ["file"]
    assert result.quarantined.item(0, "error") == error
    assert "\x00" not in result.quarantined.item(0, "raw_payload")


def test_comparator_value_quantity_is_parsed(tmp_path: Path) -> None:
    value = {"value": 0.5, "comparator": "<", "unit": "10*9/L", "code": "10*9/L"}
    data = _ndjson([_obs(valueQuantity=value, referenceRange=[{"low": {"value": 1.5}}])])
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", data), tmp_path)
    row = result.tables["observations"].row(0, named=True)
    assert row["value_type"] == "quantity"
    assert (row["value_numeric"], row["value_comparator"]) == (0.5, "<")
    assert (row["value_unit"], row["value_unit_code"], row["ref_low"]) == ("10*9/L", "10*9/L", 1.5)
    assert row["effective_at"] == dt.datetime(2026, 11, 2, 8, 30)  # +02:00: as sent
    assert row["effective_at_offset_min"] == 120


def test_effective_period_start_is_used_without_effective_datetime(tmp_path: Path) -> None:
    data = _ndjson(
        [
            _obs(effectiveDateTime=None, effectivePeriod={"start": "2026-10-01"}),
            _obs(id="o2", effectiveDateTime=None, issued="2026-10-05T10:00:00.123Z"),
            _obs(id="o3", effectiveDateTime="2026-09"),
        ]
    )
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", data), tmp_path)
    assert result.tables["observations"].get_column("effective_at").to_list() == [
        dt.datetime(2026, 10, 1),
        dt.datetime(2026, 10, 5, 10, 0, 0, 123000),
        dt.datetime(2026, 9, 1),
    ]


def test_unparseable_effective_date_is_quarantined(tmp_path: Path) -> None:
    data = _ndjson([_obs(), _obs(id="o2", effectiveDateTime="2026-13-45T99:00:00Z")])
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", data), tmp_path)
    assert_balanced(result)
    assert result.quarantined.item(0, "error") == (
        "observation effective time is not a valid date/time"
    )
    assert result.quarantined.item(0, "source_position") == 2


def test_field_of_wrong_json_type_is_quarantined_and_named(tmp_path: Path) -> None:
    data = _ndjson([_obs(), _obs(id="o2", valueQuantity={"value": "high"}), _obs(id="o3")])
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", data), tmp_path)
    assert_balanced(result)
    assert result.tables["observations"].get_column("record_id").to_list() == ["obs-1", "o3"]
    assert result.quarantined.item(0, "error") == (
        "Observation.valueQuantity has a JSON type FHIR R4 does not allow"
    )


def test_references_resolve_relative_absolute_and_urn(tmp_path: Path) -> None:
    data = _ndjson(
        [
            _obs(subject={"reference": "Patient/x"}),
            _obs(id="o2", subject={"reference": "https://ehr.example/fhir/Patient/y/_history/3"}),
            _obs(id="o3", subject={"reference": "urn:uuid:z"}),
            _obs(id="o4", subject={"reference": "Group/g1"}),
        ]
    )
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", data), tmp_path)
    assert result.tables["observations"].get_column("patient_ref").to_list() == ["x", "y", "z"]
    assert result.quarantined.item(0, "error") == "observation subject is not a Patient reference"


def test_bundle_fullurl_resolves_to_the_patient_id(tmp_path: Path) -> None:
    patient = {
        "resourceType": "Patient",
        "id": "pat-42",
        "identifier": [{"system": "urn:x", "value": "OTHER"}, _mr("MRN-1")],
        "name": [{"family": "Doe", "given": ["Jane", "Q"]}],
        "gender": "female",
        "birthDate": "1980-02",
    }
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "424413001"},
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C49.9"},
            ],
            "text": "Alveolar soft part sarcoma",
        },
        "subject": {"reference": "urn:uuid:aaaa"},
        "onsetPeriod": {"start": "2025-01-02"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:aaaa", "resource": patient},
            {"fullUrl": "urn:uuid:bbbb", "resource": condition},
            {"resource": {"resourceType": "Encounter", "id": "e1"}},
        ],
    }
    result = parse_fhir_file(_write(tmp_path / "b.json", orjson.dumps(bundle)), tmp_path)
    assert_balanced(result)
    p = result.tables["patients"].row(0, named=True)
    assert (p["mrn"], p["given_name"], p["birth_date"]) == ("MRN-1", "Jane Q", dt.date(1980, 2, 1))
    c = result.tables["conditions"].row(0, named=True)
    assert (c["patient_ref"], c["code"], c["code_system"]) == (
        "pat-42",
        "C49.9",
        "http://hl7.org/fhir/sid/icd-10-cm",
    )
    assert (c["code_text"], c["onset_at"]) == (
        "Alveolar soft part sarcoma",
        dt.datetime(2025, 1, 2),
    )
    assert result.ignored == {"Encounter": 1}


def _mr(value: str) -> dict[str, object]:
    return {"type": {"coding": [{"code": "MR"}]}, "value": value}


def test_patient_without_identifier_is_quarantined_without_phi(tmp_path: Path) -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p9",
        "name": [{"family": "Zyxwvut", "given": ["Quince"]}],
        "birthDate": "1971-07-13",
    }
    result = parse_fhir_file(_write(tmp_path / "Patient.ndjson", _ndjson([patient])), tmp_path)
    assert_balanced(result)
    error = result.quarantined.item(0, "error")
    assert error == "patient has no identifier (no MRN)"
    assert "Zyxwvut" in result.quarantined.item(0, "raw_payload")
    assert not any(s in error for s in ("Zyxwvut", "Quince", "1971"))


def test_medications_of_all_three_types_map_start_and_end(tmp_path: Path) -> None:
    med = {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01FF05"}], "text": "atezo"}
    common = {"subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": med}
    data = _ndjson(
        [
            {"resourceType": "MedicationRequest", "id": "r", "authoredOn": "2025-03-01", **common},
            {
                "resourceType": "MedicationStatement",
                "id": "s",
                "status": "active",
                "effectivePeriod": {"start": "2025-04-01", "end": "2025-05-01T00:00:00Z"},
                **common,
            },
            {"resourceType": "MedicationAdministration", "id": "a", **common},
        ]
    )
    result = parse_fhir_file(_write(tmp_path / "export.ndjson", data), tmp_path)
    assert_balanced(result)
    meds = result.tables["medications"].sort("record_id")
    assert meds.get_column("resource_type").to_list() == [
        "MedicationAdministration",
        "MedicationRequest",
        "MedicationStatement",
    ]
    assert meds.get_column("code").unique().to_list() == ["L01FF05"]
    assert meds.get_column("start_at").to_list() == [
        None,
        dt.datetime(2025, 3, 1),
        dt.datetime(2025, 4, 1),
    ]
    assert meds.get_column("end_at").to_list()[2] == dt.datetime(2025, 5, 1)


def test_other_resource_types_in_an_ndjson_are_routed_or_ignored(tmp_path: Path) -> None:
    # A Condition's bodySite is a list, an Observation's a single object: it must be
    # re-decoded as a Condition, not rejected as a malformed Observation.
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"text": "ASPS"},
        "bodySite": [{"text": "thigh"}],
        "subject": {"reference": "Patient/p1"},
    }
    data = _ndjson([_obs(), condition, {"resourceType": "Encounter", "id": "e"}, {"id": "x"}])
    result = parse_fhir_file(_write(tmp_path / "Observation.ndjson", data), tmp_path)
    assert_balanced(result)
    assert result.tables["observations"].height == 1
    assert result.tables["conditions"].get_column("code_text").to_list() == ["ASPS"]
    assert result.ignored == {"Encounter": 1}
    assert result.quarantined.rows() == [
        ("fhir", "record", "Observation.ndjson", 4, "resource has no resourceType", '{"id":"x"}')
    ]


def test_is_fhir_file_recognizes_bulk_and_bundle_names() -> None:
    assert is_fhir_file(Path("Observation.000.ndjson.gz"))
    assert is_fhir_file(Path("Patient.ndjson"))
    assert is_fhir_file(Path("x/bundle.JSON"))
    assert not is_fhir_file(Path("results.hl7"))
    assert not is_fhir_file(Path("patients.csv"))
