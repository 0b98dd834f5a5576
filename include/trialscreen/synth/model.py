"""Format-neutral patient records: what the generator decides, before any feed renders it.

The writers (``synth.writers``) turn these into FHIR, HL7 v2 and CSV; the oracle
(``synth.oracle``) reads the same objects to compute the expected outcome. Values are kept
as the decimal text a feed will carry (``value``), so the oracle sees exactly what a parser
will read and rounding can never make the two disagree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from trialscreen.codesystems import ATC, ICD10CM, ICDO3, RXNORM, SNOMED
from trialscreen.settings import TIMEZONE_ENV, hospital_zone


@lru_cache(maxsize=8)
def _zone_named(raw: str) -> ZoneInfo:
    return hospital_zone(raw)


_PINNED: list[ZoneInfo] = []


def local_zone() -> ZoneInfo:
    """``settings.hospital_zone()`` for the current environment, validated once per value
    (the generator asks for it for every timestamp it writes; ``pin_zone`` holds it for the
    length of a generation so the environment is read once)."""
    if _PINNED:
        return _PINNED[-1]
    return _zone_named(os.environ.get(TIMEZONE_ENV, ""))


@contextmanager
def pin_zone() -> Iterator[ZoneInfo]:
    """Read the hospital zone once and answer ``local_zone()`` with it until the block ends."""
    _PINNED.append(_zone_named(os.environ.get(TIMEZONE_ENV, "")))
    try:
        yield _PINNED[-1]
    finally:
        _PINNED.pop()


def iso_seconds(dt: datetime) -> str:
    """``dt.strftime("%Y-%m-%dT%H:%M:%S")`` (years 1000-9999), at a tenth of its cost."""
    return dt.isoformat(timespec="seconds")[:19]


def compact_seconds(dt: datetime) -> str:
    """``dt.strftime("%Y%m%d%H%M%S")`` (years 1000-9999), at a fraction of its cost."""
    s = dt.isoformat(timespec="seconds")
    return s[0:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19]


# Short names used in the neutral model and in the CSV contract -> FHIR system URI.
SYSTEM_URI = {
    "icd-10-cm": ICD10CM,
    "icd-o-3": ICDO3,
    "snomed": SNOMED,
    "rxnorm": RXNORM,
    "atc": ATC,
}

# HL7 local lab codes used in OBX-3 with coding system "L" (the lead seeds these).
LOCAL_LAB_CODES: dict[str, str] = {
    "HGB": "718-7",
    "PLT": "777-3",
    "ANC": "751-8",
    "CREAT": "2160-0",
    "TBIL": "1975-2",
    "AST": "1920-8",
    "ALT": "1742-6",
    "ALB": "1751-7",
    "NA": "2951-2",
    "HIVVL": "20447-9",
}

# Institutional ULN seed (canonical units) used when a result has no plausible own range.
INSTITUTIONAL_ULN: dict[str, float] = {
    "bilirubin": 1.2,
    "ast": 40.0,
    "alt": 40.0,
    "creatinine": 1.2,
}


@dataclass(slots=True)
class Obs:
    """One observation: lab, vital sign, performance score, tumor size or disease status."""

    id: str
    kind: str  # lab | vital | perf | tumor | status
    loinc: str
    display: str
    effective: datetime  # aware UTC
    issued: datetime
    local_code: str | None = None  # rendered as a local code (HL7 "L" / CSV local_code)
    value: str | None = None  # decimal text, as the feed carries it
    comparator: str | None = None  # <, <=, >, >=
    unit: str | None = None  # unit spelling as the feed carries it
    value_code: str | None = None  # SNOMED answer (not detected, worsened)
    value_code_display: str | None = None
    ref_low: str | None = None
    ref_high: str | None = None
    status: str = "final"  # FHIR vocabulary
    order_id: str | None = None
    method_code: str | None = None  # DICOM modality
    method_text: str | None = None
    body_site_code: str | None = None  # SNOMED
    body_site_text: str | None = None
    short_axis: str | None = None  # tumor: the short axis (FHIR component 33729-5, CSV column)
    size_as_component: bool = False  # tumor (FHIR): size as mCODE components, not valueQuantity
    bad: str | None = None  # why a feed must quarantine it (the oracle ignores it)
    # issue 10: the value as text (HL7 ST/TX, FHIR valueString, CSV value) instead of
    # value/comparator; the system of value_code (None: snomed); the sending facility
    value_text: str | None = None
    value_code_system: str | None = None  # snomed | loinc
    facility: str | None = None


@dataclass(slots=True)
class Cond:
    id: str
    system: str  # icd-10-cm | icd-o-3 | snomed | text
    code: str | None
    display: str
    onset: date
    text: str | None = None  # Condition.code.text when it differs from the display
    extra_codings: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (system, code, display)
    clinical_status: str | None = "active"
    verification_status: str | None = "confirmed"
    abatement: date | None = None  # Condition.abatementDateTime / CSV abatement_date
    system_uri: str | None = None  # the system as the feed spells it (an OID) instead of the URI


@dataclass(slots=True)
class Med:
    id: str
    record_type: str  # request | statement | administration
    system: str  # rxnorm | atc | text
    code: str | None
    name: str
    status: str
    start: datetime
    end: datetime | None = None
    intent: str | None = None  # MedicationRequest.intent (None: order)
    extra_codings: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (system, code, display) beside the first coding
    reference: str | None = None  # FHIR: codings in a Medication resource (contained | resource)


@dataclass(slots=True)
class PatientRecord:
    index: int
    mrn: str
    fhir_id: str
    family: str
    given: str
    birth_date: date
    sex: str  # male | female | other | unknown
    route: str  # fhir | fhir_hl7 | csv
    lab_feed: str  # fhir | hl7 | csv
    bundle: bool
    obs: list[Obs] = field(default_factory=list)
    conditions: list[Cond] = field(default_factory=list)
    meds: list[Med] = field(default_factory=list)
    scenario: dict[str, str] = field(default_factory=dict)  # dimension -> variant label
    # identity (docs/decisions.md "Demographics merged field by field", "Patient merges and
    # test patients"): HL7 PID-7/PID-8 sent blank after FHIR sent them; an older MRN the
    # hospital merged into this one (its CSV patient row and vitals, patient_merges.csv);
    # a test patient (MRN prefix ZZTEST, seed test_patients: never screened)
    hl7_blank_demographics: bool = False
    retired_mrn: str | None = None
    test_patient: bool = False
