"""Every coding kept (docs/decisions.md "Every coding is kept"): the parsers write each coding
of a Condition or medication to ``raw.<feed>_codings``, with the parent's lineage; ingest loads
the child rows with the parent's dedup and does not count them as records."""

from __future__ import annotations

import json
from pathlib import Path

from trialscreen import ingest
from trialscreen.warehouse import Warehouse

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"


def _bundle() -> dict[str, object]:
    subject = {"reference": "urn:uuid:p1"}
    entries = [
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "CODX1"}],
            "birthDate": "1980-01-01",
        },
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": {
                "coding": [
                    {
                        "system": RX,
                        "code": "1547550",
                        "display": "pembrolizumab 25 MG/ML [Keytruda]",
                    }
                ]
            },
        },
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": subject,
            "code": {
                "coding": [
                    {"system": "urn:oid:2.16.840.1.113883.6.90", "code": "C49.2"},
                    {"system": "urn:oid:2.16.840.1.113883.6.43.1", "code": "M-95813"},
                    {"system": "http://snomed.info/sct", "code": "450910001"},
                ]
            },
            "onsetDateTime": "2020-01-01",
        },
        {
            "resourceType": "MedicationRequest",
            "id": "r1",
            "intent": "order",
            "status": "completed",
            "subject": subject,
            "medicationReference": {"reference": "urn:uuid:m1"},
            "authoredOn": "2024-01-01",
        },
        {
            "resourceType": "MedicationRequest",
            "id": "r2",
            "intent": "order",
            "status": "completed",
            "subject": subject,
            "authoredOn": "2024-01-01",
            "medicationReference": {"reference": "#x"},
            "contained": [
                {
                    "resourceType": "Medication",
                    "id": "x",
                    "code": {"coding": [{"system": ATC, "code": "L01FF01"}]},
                }
            ],
        },
        {
            "resourceType": "MedicationStatement",
            "id": "s1",
            "status": "not-taken",
            "subject": subject,
            "effectiveDateTime": "2024-01-01",
            "medicationCodeableConcept": {
                "coding": [{"system": RX, "code": "1547550"}, {"system": ATC, "code": "L01FF02"}]
            },
        },
    ]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{e['id']}", "resource": e} for e in entries],
    }


def test_codings_land_once_beside_their_parents(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "fhir").mkdir(parents=True)
    (drop / "fhir" / "a.json").write_text(json.dumps(_bundle()))
    (drop / "csv").mkdir()
    (drop / "csv" / "medications.csv").write_text(
        "mrn,medication_id,record_type,code_system,code,name,alt_code_system,alt_code,"
        "status,start_date\n"
        "CODX1,m9,request,rxnorm,1547550,,atc,L01FF02,completed,2024-01-01\n"
    )
    with Warehouse.connect(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        counts = ingest.ingest(wh, drop, "run-1")
        # child rows are not records: 5 FHIR records (Medication is reference data), 1 CSV row
        assert (counts["fhir"].records_in, counts["fhir"].loaded) == (5, 5)
        assert counts["fhir"].balanced and counts["csv"].balanced
        assert (counts["csv"].records_in, counts["csv"].loaded) == (1, 1)
        rows = wh.query(
            "select entity, record_id, element, seq, system, code from raw.fhir_codings "
            "order by entity, record_id, element, seq"
        )
        assert rows == [
            ("conditions", "c1", "code", 1, "urn:oid:2.16.840.1.113883.6.90", "C49.2"),
            ("conditions", "c1", "code", 2, "urn:oid:2.16.840.1.113883.6.43.1", "M-95813"),
            ("conditions", "c1", "code", 3, "http://snomed.info/sct", "450910001"),
            ("medication_resources", "Medication/m1", "code", 1, RX, "1547550"),
            ("medications", "r1", "reference", 1, None, "Medication/m1"),
            ("medications", "r2", "medication", 1, ATC, "L01FF01"),
            ("medications", "s1", "medication", 1, RX, "1547550"),
            ("medications", "s1", "medication", 2, ATC, "L01FF02"),
        ]
        assert wh.query("select code from raw.csv_codings order by seq") == [
            ("1547550",),
            ("L01FF02",),
        ]
        # the same records again in a new file: duplicates, and no child row twice
        (drop / "fhir" / "b.json").write_text(json.dumps(_bundle(), indent=1))
        again = ingest.ingest(wh, drop, "run-2")
        assert (again["fhir"].loaded, again["fhir"].duplicates_skipped) == (0, 5)
        assert wh.scalar("select count(*) from raw.fhir_codings") == 8
        intents = wh.query("select record_id, intent from raw.fhir_medications order by 1")
        assert intents == [("r1", "order"), ("r2", "order"), ("s1", None)]
