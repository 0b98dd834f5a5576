"""The Synthea CSV export dialect: ``patients.csv`` (``Id,BIRTHDATE,...``),
``observations.csv``, ``conditions.csv``, ``medications.csv``, recognised by its header (``Id``
or UPPERCASE names). Synthea has no MRN, so its patient ``Id`` stands in as ``mrn`` and
``patient_ref``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import polars as pl

from trialscreen.codesystems import RXNORM, SNOMED
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.csv.mapping import (
    Mapping,
    _apply,
    _bad_date,
    _bad_number,
    _bad_timestamp,
    _cells,
    _code_system,
    _comparator,
    _const,
    _date,
    _lower,
    _missing,
    _numeric,
    _subject,
    _timestamp,
)
from trialscreen.feeds.csv.read import FEED, _data_head, _file_quarantined, unknown_entity

# Synthea v3 export files the pipeline does not use: counted in ``ignored``, not quarantined.
SYNTHEA_UNUSED = frozenset(
    {
        "allergies", "careplans", "claims", "claims_transactions", "devices", "encounters",
        "imaging_studies", "immunizations", "organizations", "payer_transitions", "payers",
        "procedures", "providers", "supplies",
    }
)  # fmt: skip
SYNTHEA_REQUIRED: dict[str, tuple[str, ...]] = {
    "patients": ("Id", "BIRTHDATE"),
    "observations": ("DATE", "PATIENT", "CODE", "VALUE", "TYPE"),
    "conditions": ("START", "PATIENT", "CODE"),
    "medications": ("START", "PATIENT", "CODE"),
}
SYNTHEA_OPTIONAL: dict[str, tuple[str, ...]] = {
    "patients": ("FIRST", "LAST", "GENDER", "DEATHDATE"),
    "observations": ("ENCOUNTER", "CATEGORY", "DESCRIPTION", "UNITS"),
    "conditions": ("STOP", "ENCOUNTER", "DESCRIPTION", "SYSTEM"),
    "medications": ("STOP", "ENCOUNTER", "DESCRIPTION"),
}
_SYNTHEA_HEADER = re.compile(r"^(Id|[A-Z][A-Z0-9_]*)$")
_LOINC_CODE = r"^\d{1,7}-\d$"


def is_synthea_header(columns: list[str]) -> bool:
    """Synthea headers are ``Id`` or UPPERCASE; the contract's are lowercase with ``mrn``."""
    if any(c.strip().lower() == "mrn" for c in columns):
        return False
    return bool(columns) and all(_SYNTHEA_HEADER.match(c.strip()) for c in columns)


def _parse_synthea(raw: pl.DataFrame, stem: str, source_file: str, data: bytes) -> ParsedFile:
    if stem in SYNTHEA_UNUSED:
        return ParsedFile(feed=FEED, source_file=source_file, ignored={stem: raw.height})
    if stem not in SYNTHEA_REQUIRED:
        error = unknown_entity(stem, SYNTHEA_REQUIRED)
        return _file_quarantined(source_file, error, _data_head(data))
    names = [c.strip() for c in raw.columns]
    missing = [c for c in SYNTHEA_REQUIRED[stem] if c not in names]
    if missing:
        error = f"missing required column(s): {', '.join(missing)}"
        return _file_quarantined(source_file, error, _data_head(data))
    wanted = SYNTHEA_REQUIRED[stem] + SYNTHEA_OPTIONAL[stem]
    cells = _cells(raw, names, wanted)
    return _apply(SYNTHEA_MAPPINGS[stem](), raw, cells, source_file)


# ---------------------------------------------------------------- Synthea mappings


def _synthea_id(*columns: str) -> pl.Expr:
    """Synthea rows have no id of their own: patient|encounter|code|time identifies one.

    The export can repeat that key (two requests for one drug in one encounter, different
    STOP): the second and later occurrences in file order get ``#2``, ``#3``.
    """
    key = pl.concat_str([pl.col(c).fill_null("") for c in columns], separator="|")
    occurrence = pl.int_range(1, pl.len() + 1).over(key)
    suffix = pl.when(occurrence > 1).then(pl.lit("#") + occurrence.cast(pl.String))
    # the key starts with the patient Id, which is the MRN here: record ids travel to the
    # analysts' marts as evidence, so the key is hashed (stable, unique, PHI-free)
    return pl.concat_str([key, suffix], ignore_nulls=True).map_batches(
        _sha_prefix, return_dtype=pl.String
    )


def _sha_prefix(values: pl.Series) -> pl.Series:
    return pl.Series(
        [hashlib.sha256(v.encode()).hexdigest()[:24] if v is not None else None for v in values],
        dtype=pl.String,
    )


def _synthea_patients() -> Mapping:
    return Mapping(
        "patients",
        {
            "record_id": pl.col("Id"),
            **_subject("Id"),  # Synthea CSV has no MRN: the patient Id stands in
            "family_name": pl.col("LAST"),
            "given_name": pl.col("FIRST"),
            "birth_date": _date("BIRTHDATE"),
            "sex": pl.col("GENDER"),
            "deceased_at": _timestamp("DEATHDATE"),
        },
        [_missing("Id"), _bad_date("BIRTHDATE", required=True), _bad_timestamp("DEATHDATE")],
        timestamps=("DEATHDATE",),
        dates=("BIRTHDATE",),
    )


def _synthea_observations() -> Mapping:
    numeric_type = _lower("TYPE") == "numeric"
    is_loinc = pl.col("CODE").str.contains(_LOINC_CODE)
    units = pl.when(pl.col("UNITS") != "null").then(pl.col("UNITS"))  # Synthea writes "null"
    return Mapping(
        "observations",
        {
            "record_id": _synthea_id("PATIENT", "ENCOUNTER", "CODE", "DATE"),
            **_subject("PATIENT"),
            "category": pl.col("CATEGORY"),
            "loinc": pl.when(is_loinc).then(pl.col("CODE")),
            "local_code": pl.when(~is_loinc).then(pl.col("CODE")),  # QALY, DALY, QOLS
            "local_system": pl.when(~is_loinc).then(_const("synthea")),
            "code_display": pl.col("DESCRIPTION"),
            "value_type": pl.when(numeric_type)
            .then(pl.lit("quantity"))
            .otherwise(
                pl.when(pl.col("VALUE").is_not_null())
                .then(pl.lit("string"))
                .otherwise(pl.lit("none"))
            ),
            "value_numeric": pl.when(numeric_type).then(_numeric("VALUE")),
            "value_comparator": pl.when(numeric_type).then(_comparator("VALUE")),
            "value_text": pl.when(~numeric_type).then(pl.col("VALUE")),
            "value_unit": units,
            "status": _const("final"),
            "effective_at": _timestamp("DATE"),
        },
        [
            _missing("PATIENT"),
            _missing("CODE"),
            _bad_timestamp("DATE", required=True),
            pl.when(numeric_type).then(_bad_number("VALUE", required=True)),
        ],
        timestamps=("DATE",),
        numbers=("VALUE",),
    )


def _synthea_conditions() -> Mapping:
    return Mapping(
        "conditions",
        {
            "record_id": _synthea_id("PATIENT", "ENCOUNTER", "CODE", "START"),
            **_subject("PATIENT"),
            "code_system": _code_system("SYSTEM", default=SNOMED),  # v3.0 has no SYSTEM
            "code": pl.col("CODE"),
            "code_display": pl.col("DESCRIPTION"),
            "code_text": pl.col("DESCRIPTION"),
            "clinical_status": pl.when(pl.col("STOP").is_null())
            .then(_const("active"))
            .otherwise(_const("resolved")),
            "verification_status": _const("confirmed"),
            "onset_at": _timestamp("START"),
            "recorded_at": _timestamp("START"),
            "abatement_at": _timestamp("STOP"),
        },
        [
            _missing("PATIENT"),
            _missing("CODE"),
            _bad_timestamp("START", required=True),
            _bad_timestamp("STOP"),
        ],
        timestamps=("START", "STOP"),
    )


def _synthea_medications() -> Mapping:
    return Mapping(
        "medications",
        {
            "record_id": _synthea_id("PATIENT", "ENCOUNTER", "CODE", "START"),
            **_subject("PATIENT"),
            "resource_type": _const("MedicationRequest"),  # as Synthea's FHIR exporter writes
            "code_system": _const(RXNORM),
            "code": pl.col("CODE"),
            "code_display": pl.col("DESCRIPTION"),
            "code_text": pl.col("DESCRIPTION"),
            "status": pl.when(pl.col("STOP").is_null())
            .then(_const("active"))
            .otherwise(_const("stopped")),
            "start_at": _timestamp("START"),
            "end_at": _timestamp("STOP"),
        },
        [
            _missing("PATIENT"),
            _missing("CODE"),
            _bad_timestamp("START", required=True),
            _bad_timestamp("STOP"),
        ],
        timestamps=("START", "STOP"),
    )


SYNTHEA_MAPPINGS: dict[str, Callable[[], Mapping]] = {
    "patients": _synthea_patients,
    "observations": _synthea_observations,
    "conditions": _synthea_conditions,
    "medications": _synthea_medications,
}
