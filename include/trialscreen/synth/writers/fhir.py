"""FHIR R4 Bulk Data NDJSON and Synthea-style transaction bundles (docs/specification.md#fhir-r4).

Observation NDJSON is split into numbered parts (one per chunk of patients); every second
part is gzipped, so readers meet both ``Observation.<n>.ndjson`` and ``.ndjson.gz``.
gzip members are written with mtime 0 so the bytes depend only on the content.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from trialscreen.codesystems import DICOM, LOINC, SNOMED, UCUM, V2_0203
from trialscreen.synth.model import (
    SYSTEM_URI,
    Cond,
    Med,
    Obs,
    PatientRecord,
    iso_seconds,
)

UCUM_SPELLINGS = {
    "10*3/uL",
    "10*9/L",
    "/uL",
    "{cells}/uL",
    "g/dL",
    "g/L",
    "mmol/L",
    "mg/dL",
    "umol/L",
    "U/L",
    "[IU]/L",
    "kg",
    "g",
    "[lb_av]",
    "cm",
    "m",
    "[in_i]",
    "mm",
    "{copies}/mL",
    "{Log_copies}/mL",
    "mEq/L",
}
CATEGORY = {
    "lab": "laboratory",
    "vital": "vital-signs",
    "perf": "survey",
    "tumor": "imaging",
    "status": "exam",
}
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
RESOURCES = (
    "Patient",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Medication",  # the Medication resources a medicationReference names
)
MED_TYPE = {
    "request": "MedicationRequest",
    "statement": "MedicationStatement",
    "administration": "MedicationAdministration",
}


def ts(dt: datetime, style: int = 0) -> str:
    """ISO 8601 instant; style 1 writes +00:00, style 2 a -05:00 offset when the date holds."""
    u = dt.astimezone(UTC)
    if style == 2 and u.hour >= 5:
        return iso_seconds(u.replace(hour=u.hour - 5)) + "-05:00"
    if style == 1:
        return iso_seconds(u) + "+00:00"
    return iso_seconds(u) + "Z"


def _num(text: str) -> float | int:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _quantity(value: str, unit: str | None, comparator: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": _num(value)}
    if comparator:
        q["comparator"] = comparator
    if unit:
        q["unit"] = unit
        if unit in UCUM_SPELLINGS:
            q["system"] = UCUM
            q["code"] = unit
    return q


def patient_resource(p: PatientRecord) -> dict[str, Any]:
    mr = {
        "type": {
            "coding": [{"system": V2_0203, "code": "MR", "display": "Medical Record Number"}],
            "text": "Medical Record Number",
        },
        "system": "http://hospital.example.org/mrn",
        "value": p.mrn,
    }
    other = {"system": "https://github.com/synthetichealth/synthea", "value": p.fhir_id}
    return {
        "resourceType": "Patient",
        "id": p.fhir_id,
        "identifier": [other, mr] if p.index % 2 else [mr, other],
        "name": [{"use": "official", "family": p.family, "given": [p.given]}],
        "gender": p.sex,
        "birthDate": p.birth_date.isoformat(),
    }


def observation_resource(o: Obs, subject: str | None, style: int) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": "Observation",
        "id": o.id,
        "status": o.status,
        "category": [{"coding": [{"system": OBS_CAT, "code": CATEGORY[o.kind]}]}],
        "code": {
            "coding": [{"system": LOINC, "code": o.loinc, "display": o.display}],
            "text": o.display,
        },
    }
    if subject is not None:
        r["subject"] = {"reference": subject}
    if o.bad == "fhir_bad_date":
        r["effectiveDateTime"] = "31/02/2026 25:61"
    elif style == 1:
        r["effectivePeriod"] = {"start": ts(o.effective, 1)}
    else:
        r["effectiveDateTime"] = ts(o.effective, style)
    if o.bad != "fhir_bad_date":
        r["issued"] = ts(o.issued)
    if o.order_id:
        r["basedOn"] = [
            {"identifier": {"system": "http://hospital.example.org/order", "value": o.order_id}}
        ]
    if o.value_code:
        system = LOINC if o.value_code_system == "loinc" else SNOMED
        r["valueCodeableConcept"] = {
            "coding": [{"system": system, "code": o.value_code, "display": o.value_code_display}],
            "text": o.value_code_display,
        }
    elif o.value_text is not None:  # a value as the lab printed it (issue 10)
        r["valueString"] = o.value_text
    elif o.kind == "perf" and o.value is not None:
        r["valueInteger"] = int(o.value)
    elif o.size_as_component and o.value is not None:
        # mCODE TumorSize: the longest dimension as a component, no value[x]
        r["component"] = [_tumor_component(TUMOR_LONGEST, o.value, o.unit)]
    elif o.value is not None:
        r["valueQuantity"] = _quantity(o.value, o.unit, o.comparator)
    if o.short_axis is not None:
        r.setdefault("component", []).append(
            _tumor_component(TUMOR_ADDITIONAL, o.short_axis, o.unit)
        )
    if o.ref_high is not None or o.ref_low is not None:
        rng: dict[str, Any] = {}
        if o.ref_low is not None:
            rng["low"] = _quantity(o.ref_low, o.unit)
        if o.ref_high is not None:
            rng["high"] = _quantity(o.ref_high, o.unit)
        r["referenceRange"] = [rng]
    if o.method_code:
        system = SNOMED if o.method_code.isdigit() else DICOM
        r["method"] = {"coding": [{"system": system, "code": o.method_code}]}
    elif o.method_text:
        r["method"] = {"text": o.method_text}
    if o.body_site_code:
        r["bodySite"] = {
            "coding": [{"system": SNOMED, "code": o.body_site_code, "display": o.body_site_text}]
        }
    elif o.body_site_text:
        r["bodySite"] = {"text": o.body_site_text}
    return r


def condition_resource(c: Cond, subject: str) -> dict[str, Any]:
    codings = []
    if c.system != "text" and c.code:
        system = c.system_uri or SYSTEM_URI[c.system]  # an OID where the source sends one
        codings.append({"system": system, "code": c.code, "display": c.display})
    codings += [
        {"system": SYSTEM_URI[s], "code": code, "display": d} for s, code, d in c.extra_codings
    ]
    r: dict[str, Any] = {"resourceType": "Condition", "id": c.id}
    if c.clinical_status:
        r["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": c.clinical_status,
                }
            ]
        }
    if c.verification_status:
        r["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": c.verification_status,
                }
            ]
        }
    r["code"] = {"coding": codings, "text": c.text or c.display}
    r["subject"] = {"reference": subject}
    # date-only: a local date in any hospital zone (docs/decisions.md "Local time")
    r["onsetDateTime"] = c.onset.isoformat()
    r["recordedDate"] = c.onset.isoformat()
    if c.abatement is not None:
        r["abatementDateTime"] = c.abatement.isoformat()
    return r


def _med_concept(m: Med) -> dict[str, Any]:
    """The drug as a CodeableConcept: every coding (a code-only record has no text)."""
    concept: dict[str, Any] = {"text": m.name} if m.name else {}
    codings = [(m.system, m.code or "", m.name)] if m.system != "text" and m.code else []
    codings += m.extra_codings
    if codings:
        concept["coding"] = [
            {"system": SYSTEM_URI[s], "code": code, **({"display": d} if d else {})}
            for s, code, d in codings
        ]
    return concept


def medication_id(m: Med) -> str:
    """The id of the Medication resource a medicationReference of ``m`` points to."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"medication:{m.id}"))


def medication_definition(m: Med) -> dict[str, Any]:
    """The Medication resource behind ``m.reference`` (contained, bundle entry or NDJSON)."""
    return {"resourceType": "Medication", "id": medication_id(m), "code": _med_concept(m)}


def medication_resource(m: Med, subject: str, ref: str | None = None) -> dict[str, Any]:
    """``ref``: how a non-contained Medication resource is referenced (Medication/<id>, or the
    bundle entry's fullUrl)."""
    rtype = MED_TYPE[m.record_type]
    r: dict[str, Any] = {"resourceType": rtype, "id": m.id, "status": m.status}
    if m.reference == "contained":
        r["contained"] = [{**medication_definition(m), "id": "med"}]
        r["medicationReference"] = {"reference": "#med"}
    elif m.reference is not None:
        r["medicationReference"] = {"reference": ref or f"Medication/{medication_id(m)}"}
    else:
        r["medicationCodeableConcept"] = _med_concept(m)
    if rtype == "MedicationRequest":
        r["intent"] = m.intent or "order"
        r["subject"] = {"reference": subject}
        r["authoredOn"] = ts(m.start)
    elif rtype == "MedicationStatement":
        r["subject"] = {"reference": subject}
        period = {"start": ts(m.start)}
        if m.end is not None:
            period["end"] = ts(m.end)
        r["effectivePeriod"] = period
    else:
        r["subject"] = {"reference": subject}
        r["effectiveDateTime"] = ts(m.start)
    return r


class _Sink:
    """One NDJSON output file, plain or gzip, counting lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: IO[bytes]
        if path.suffix == ".gz":
            self.fh = gzip.GzipFile(path, "wb", mtime=0)  # type: ignore[assignment]
        else:
            self.fh = open(path, "wb")  # noqa: SIM115
        self.lines = 0

    def write(self, line: bytes) -> int:
        self.fh.write(line + b"\n")
        self.lines += 1
        return self.lines

    def close(self) -> None:
        self.fh.close()


class FhirWriter:
    """Streams patients into ``fhir/``; records per-file counts and bad-record positions."""

    def __init__(
        self,
        root: Path,
        report_bad: Callable[[str, str, int, str, str], None],
        bundles: Path | None = None,
        first_part: int = 1,
    ) -> None:
        """``bundles``: where bundle files go (default ``root/bundles``); ``first_part``: the
        number of the first Observation part (a shard of a larger population starts later)."""
        self.root = root
        self.bundles = bundles or root / "bundles"
        root.mkdir(parents=True, exist_ok=True)
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.report_bad = report_bad
        self.sinks = {name: _Sink(root / f"{name}.ndjson") for name in RESOURCES}
        self.obs_sink: _Sink | None = None
        self.part = first_part - 1
        self.counts: dict[str, int] = {}

    def new_part(self) -> None:
        """Start the next Observation part (called once per chunk of patients)."""
        if self.obs_sink is not None:
            self._close(self.obs_sink)
        self.part += 1
        suffix = ".ndjson.gz" if self.part % 2 == 0 else ".ndjson"
        self.obs_sink = _Sink(self.root / f"Observation.{self.part}{suffix}")

    def _close(self, sink: _Sink) -> None:
        sink.close()
        self.counts[f"fhir/{sink.path.name}"] = sink.lines

    def _emit(self, sink: _Sink, resource: dict[str, Any]) -> int:
        return sink.write(orjson.dumps(resource))

    def write(self, p: PatientRecord, clinical: bool, labs: bool) -> None:
        """Demographics always; clinical (conditions, meds, non-lab obs) and/or labs on request."""
        assert self.obs_sink is not None
        if p.bundle:
            self._bundle(p)
        else:
            subject = f"Patient/{p.fhir_id}"
            self._emit(self.sinks["Patient"], patient_resource(p))
            for i, o in enumerate(p.obs):
                if o.bad is not None or not (
                    (o.kind == "lab" and labs) or (o.kind != "lab" and clinical)
                ):
                    continue
                self._emit(
                    self.obs_sink, observation_resource(o, subject, i % 5 if i % 5 < 3 else 0)
                )
            if clinical:
                for c in p.conditions:
                    self._emit(self.sinks["Condition"], condition_resource(c, subject))
                for m in p.meds:
                    self._emit(self.sinks[MED_TYPE[m.record_type]], medication_resource(m, subject))
                    if m.reference == "resource":
                        self._emit(self.sinks["Medication"], medication_definition(m))

    def write_bad(self, p: PatientRecord) -> None:
        """Bad FHIR records go to the current Observation part whatever the patient's route."""
        assert self.obs_sink is not None
        for o in p.obs:
            if o.bad == "fhir_no_subject":
                pos = self._emit(self.obs_sink, observation_resource(o, None, 0))
                self.report_bad("fhir", self._rel(), pos, o.id, "Observation without subject")
            elif o.bad == "fhir_bad_date":
                pos = self._emit(self.obs_sink, observation_resource(o, f"Patient/{p.fhir_id}", 0))
                self.report_bad("fhir", self._rel(), pos, o.id, "unparseable effectiveDateTime")
            elif o.bad == "fhir_not_json":
                text = orjson.dumps(observation_resource(o, f"Patient/{p.fhir_id}", 0))
                pos = self.obs_sink.write(text[: len(text) // 2])
                self.report_bad(
                    "fhir", self._rel(), pos, o.id, "line is not valid JSON (truncated)"
                )

    def _rel(self) -> str:
        assert self.obs_sink is not None
        return f"fhir/{self.obs_sink.path.name}"

    def _bundle(self, p: PatientRecord) -> None:
        subject = f"urn:uuid:{p.fhir_id}"
        resources = [patient_resource(p)]
        resources += [observation_resource(o, subject, 0) for o in p.obs if o.bad is None]
        resources += [condition_resource(c, subject) for c in p.conditions]
        for m in p.meds:
            if m.reference == "resource":  # the Medication resource is an entry of the bundle
                resources.append(medication_definition(m))
            resources.append(medication_resource(m, subject, f"urn:uuid:{medication_id(m)}"))
        entries = [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        name = f"bundles/{p.fhir_id}.json"
        (self.bundles / f"{p.fhir_id}.json").write_bytes(
            orjson.dumps(bundle, option=orjson.OPT_INDENT_2)
        )
        self.counts[f"fhir/{name}"] = len(entries)

    def close(self) -> None:
        for sink in self.sinks.values():
            self._close(sink)
        if self.obs_sink is not None:
            self._close(self.obs_sink)


TUMOR_LONGEST = ("33728-7", "Size.maximum dimension in Tumor")  # mCODE TumorSize component
TUMOR_ADDITIONAL = ("33729-5", "Size additional dimension in Tumor")


def _tumor_component(code: tuple[str, str], value: Any, unit: str | None) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
        "valueQuantity": _quantity(value, unit, None),
    }
