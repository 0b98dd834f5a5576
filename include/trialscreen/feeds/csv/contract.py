"""The flat CSV extract contract (docs/specification.md#csv-extract): one UTF-8 file per entity,
header row required.

Dates are ISO 8601 (``YYYY-MM-DD``); timestamps ISO 8601 with an offset or ``Z`` (naive =
UTC). Empty cells are null. ``value`` cells may carry a comparator prefix (``<0.5``,
``>=10``). Column order does not matter; unknown extra columns are ignored; a missing
required column quarantines the whole file. The README documents every column from here.

``CONTRACT_MAPPINGS`` turns each file of the contract into its raw entity.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from trialscreen import schema
from trialscreen.codesystems import DICOM, SNOMED
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
    _status,
    _subject,
    _timestamp,
    _unless,
)
from trialscreen.feeds.csv.read import _data_head, _file_quarantined, unknown_entity

# file stem -> {column: description}; the first columns listed are required.
CSV_FILES: dict[str, dict[str, str]] = {
    "patients": {
        "mrn": "medical record number (required)",
        "family_name": "family name",
        "given_name": "given name(s)",
        "birth_date": "date of birth, YYYY-MM-DD (required)",
        "sex": "male | female | other | unknown",
        "deceased_at": "timestamp of death, if any",
    },
    "lab_results": {
        "mrn": "medical record number (required)",
        "result_id": "the lab's unique result id (required)",
        "loinc": "LOINC code; either loinc or local_code is required",
        "local_code": "the lab's local code, mapped to LOINC through seed local_lab_codes",
        "facility": "the performing laboratory / sending facility: local codes are read with"
        " its rows of seed local_lab_codes (empty = the rows for any facility)",
        "test_name": "test name as printed",
        "value": "numeric value with optional comparator (<, <=, >, >=), or text",
        "unit": "unit as reported (any spelling; mapped through seed unit_aliases)",
        "value_code": "coded result (e.g. SNOMED 260415000 not detected)",
        "value_code_system": "system of value_code: snomed | loinc | URI",
        "ref_low": "reference range low",
        "ref_high": "reference range high (used as the ULN)",
        "ref_range": "reference range text as printed",
        "abnormal_flag": "H, L, HH, LL, N, A",
        "status": "final | corrected | amended | preliminary | cancelled | entered-in-error",
        "order_id": "order / accession number (a correction shares it with the result it fixes)",
        "collected_at": "specimen collection time (required): the observation time",
        "reported_at": "time the result was issued",
    },
    "vitals": {
        "mrn": "medical record number (required)",
        "vital_id": "unique id (required)",
        "loinc": "29463-7 body weight, 8302-2 body height (required)",
        "value": "numeric value (required)",
        "unit": "kg, g, [lb_av], lb, cm, m, [in_i], in",
        "status": "final | amended | corrected | preliminary | cancelled | entered-in-error",
        "measured_at": "measurement time (required)",
    },
    "performance_status": {
        "mrn": "medical record number (required)",
        "assessment_id": "unique id (required)",
        "scale": "ecog | karnofsky | lansky (required)",
        "score": "integer score: ECOG 0-5, Karnofsky/Lansky 0-100 (required)",
        "status": "final | amended | corrected | preliminary | cancelled | entered-in-error",
        "assessed_at": "assessment time (required)",
    },
    "conditions": {
        "mrn": "medical record number (required)",
        "condition_id": "unique id (required)",
        "code_system": "icd-10-cm | icd-o-3 | snomed | text",
        "code": "the code (C49.9 or C499; 9581/3; SNOMED id); empty when text only",
        "display": "diagnosis text",
        "alt_code_system": "system of a second coding of the same condition (e.g. icd-o-3"
        " beside an icd-10-cm site code); a URI or OID is accepted",
        "alt_code": "the second code (e.g. 9581/3)",
        "alt_display": "the second code's display",
        "clinical_status": "active | recurrence | relapse | inactive | remission | resolved",
        "verification_status": "confirmed | provisional | differential | unconfirmed | refuted"
        " | entered-in-error",
        "onset_date": "onset date (YYYY-MM-DD or timestamp)",
        "recorded_date": "date recorded",
        "abatement_date": "date resolved",
    },
    "medications": {
        "mrn": "medical record number (required)",
        "medication_id": "unique id (required)",
        "record_type": "request | statement | administration",
        "code_system": "rxnorm | atc | text",
        "code": "RxNorm or ATC code; empty when text only",
        "name": "drug name (generic or brand)",
        "alt_code_system": "system of a second coding of the same drug (e.g. atc beside an"
        " rxnorm product code)",
        "alt_code": "the second code",
        "status": "active | completed | stopped | on-hold | cancelled | draft | entered-in-error"
        " | not-done (administration) | not-taken (statement)",
        "intent": "request intent: order | plan | proposal | ... (plan/proposal: not given)",
        "start_date": "start date or timestamp (required)",
        "end_date": "end date or timestamp",
    },
    "tumor_measurements": {
        "mrn": "medical record number (required)",
        "measurement_id": "unique id (required)",
        "size_value": "lesion size (required)",
        "size_unit": "mm | cm (required)",
        "method": "DICOM modality (CT, MR, CR, DX, US, PT), SNOMED CT procedure id (e.g."
        " 77477000 = CT), or free text (e.g. 'caliper'); empty = not recorded",
        "body_site_code": "SNOMED body site (a lymph node, e.g. 59441001: a nodal lesion)",
        "body_site_text": "body site text ('lymph node' in it: a nodal lesion)",
        "short_axis_value": "short axis, same unit as size_value (nodal lesions are judged on it;"
        " without it a nodal lesion's size_value is its short axis)",
        "status": "final | amended | corrected | preliminary | cancelled | entered-in-error",
        "measured_at": "imaging / exam time (required)",
    },
    "patient_merges": {
        "retired_mrn": "the MRN the hospital retired (required): its records count for the"
        " surviving MRN",
        "surviving_mrn": "the MRN it was merged into (required)",
        "merged_at": "when the merge was made (date or timestamp)",
    },
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "patients": ("mrn", "birth_date"),
    "lab_results": ("mrn", "result_id", "collected_at"),
    "vitals": ("mrn", "vital_id", "loinc", "value", "measured_at"),
    "performance_status": ("mrn", "assessment_id", "scale", "score", "assessed_at"),
    "conditions": ("mrn", "condition_id"),
    "medications": ("mrn", "medication_id", "start_date"),
    "tumor_measurements": ("mrn", "measurement_id", "size_value", "size_unit", "measured_at"),
    "patient_merges": ("retired_mrn", "surviving_mrn"),
}

LOINC_PERFORMANCE = {"ecog": "89247-1", "karnofsky": "89243-0", "lansky": "89243-0"}
PERFORMANCE_DISPLAY = {
    "ecog": "ECOG performance status",
    "karnofsky": "Karnofsky performance status",
    "lansky": "Lansky play-performance status",
}
PERFORMANCE_MAX = {"ecog": 5, "karnofsky": 100, "lansky": 100}
LOINC_TUMOR_SIZE = "21889-1"
DICOM_MODALITIES = ("CT", "MR", "CR", "DX", "US", "PT")
RECORD_TYPES = {
    "request": "MedicationRequest",
    "statement": "MedicationStatement",
    "administration": "MedicationAdministration",
}
DEFAULT_RECORD_TYPE = "MedicationStatement"  # an empty record_type: a medication list entry


# ---------------------------------------------------------------- dialects


def _parse_contract(raw: pl.DataFrame, stem: str, source_file: str, data: bytes) -> ParsedFile:
    if stem not in CSV_FILES:
        error = unknown_entity(stem, CSV_FILES)
        return _file_quarantined(source_file, error, _data_head(data))
    names = [c.strip().lower() for c in raw.columns]
    if len(set(names)) != len(names):
        error = "not valid CSV: duplicate column names in the header"
        return _file_quarantined(source_file, error, _data_head(data))
    missing = [c for c in REQUIRED[stem] if c not in names]
    if missing:
        error = f"missing required column(s): {', '.join(missing)}"
        return _file_quarantined(source_file, error, _data_head(data))
    cells = _cells(raw, names, CSV_FILES[stem])
    return _apply(CONTRACT_MAPPINGS[stem](), raw, cells, source_file)


# ---------------------------------------------------------------- contract mappings


def _contract_patients() -> Mapping:
    return Mapping(
        "patients",
        {
            "record_id": pl.col("mrn"),
            **_subject(),
            "family_name": pl.col("family_name"),
            "given_name": pl.col("given_name"),
            "birth_date": _date("birth_date"),
            "sex": pl.col("sex"),
            "deceased_at": _timestamp("deceased_at"),
        },
        [_missing("mrn"), _bad_date("birth_date", required=True), _bad_timestamp("deceased_at")],
        timestamps=("deceased_at",),
        dates=("birth_date",),
    )


def _value_columns(value: str = "value") -> dict[str, pl.Expr]:
    """Comparator + number when the cell is numeric; the text kept otherwise."""
    numeric = _numeric(value)
    return {
        "value_numeric": numeric,
        "value_comparator": _comparator(value),
        "value_text": pl.when(numeric.is_null()).then(pl.col(value)),
    }


def _contract_lab_results() -> Mapping:
    numeric = _numeric("value")
    value_type = (
        pl.when(numeric.is_not_null()).then(pl.lit("quantity"))
        .when(pl.col("value_code").is_not_null()).then(pl.lit("coded"))
        .when(pl.col("value").is_not_null()).then(pl.lit("string"))
        .otherwise(pl.lit("none"))
    )  # fmt: skip
    ref_text = pl.coalesce(
        pl.col("ref_range"),
        pl.when(pl.col("ref_low").is_not_null() | pl.col("ref_high").is_not_null()).then(
            pl.concat_str(
                [pl.col("ref_low").fill_null(""), pl.col("ref_high").fill_null("")], separator="-"
            )
        ),
    )
    return Mapping(
        "observations",
        {
            "record_id": pl.col("result_id"),
            **_subject(),
            "category": _const("laboratory"),
            "loinc": pl.col("loinc"),
            "local_code": pl.col("local_code"),
            "facility": pl.col("facility"),
            "code_display": pl.col("test_name"),
            "value_type": value_type,
            **_value_columns(),
            "value_unit": pl.col("unit"),
            "value_code": pl.col("value_code"),
            "value_code_system": _code_system("value_code_system"),
            "ref_low": _numeric("ref_low"),
            "ref_high": _numeric("ref_high"),
            "ref_text": ref_text,
            "abnormal_flag": pl.col("abnormal_flag"),
            "status": _status("status", "final"),
            "effective_at": _timestamp("collected_at"),
            "issued_at": _timestamp("reported_at"),
            "order_id": pl.col("order_id"),
        },
        [
            _missing("mrn"),
            _missing("result_id"),
            _unless(
                pl.col("loinc").is_not_null() | pl.col("local_code").is_not_null(),
                "lab result has neither loinc nor local_code",
            ),
            _bad_timestamp("collected_at", required=True),
            _bad_timestamp("reported_at"),
        ],
        timestamps=("collected_at", "reported_at"),
        numbers=("value", "ref_low", "ref_high"),
    )


def _contract_vitals() -> Mapping:
    return Mapping(
        "observations",
        {
            "record_id": pl.col("vital_id"),
            **_subject(),
            "category": _const("vital-signs"),
            "loinc": pl.col("loinc"),
            "value_type": _const("quantity"),
            **_value_columns(),
            "value_unit": pl.col("unit"),
            "status": _status("status", "final"),
            "effective_at": _timestamp("measured_at"),
        },
        [
            _missing("mrn"),
            _missing("vital_id"),
            _missing("loinc"),
            _bad_number("value", required=True),
            _bad_timestamp("measured_at", required=True),
        ],
        timestamps=("measured_at",),
        numbers=("value",),
    )


def _contract_performance_status() -> Mapping:
    scale = _lower("scale")
    score = pl.col("score").str.extract(r"^(\d+)$", 1).cast(pl.Int64, strict=False)
    maximum = scale.replace_strict(PERFORMANCE_MAX, default=None, return_dtype=pl.Int64)
    known_scale = scale.is_in(list(LOINC_PERFORMANCE))
    return Mapping(
        "observations",
        {
            "record_id": pl.col("assessment_id"),
            **_subject(),
            "category": _const("survey"),
            "loinc": scale.replace_strict(LOINC_PERFORMANCE, default=None, return_dtype=pl.String),
            "local_code": scale,  # keeps Lansky distinguishable from Karnofsky (same LOINC)
            "code_display": scale.replace_strict(
                PERFORMANCE_DISPLAY, default=None, return_dtype=pl.String
            ),
            "value_type": _const("integer"),
            "value_numeric": score.cast(pl.Float64),
            "status": _status("status", "final"),
            "effective_at": _timestamp("assessed_at"),
        },
        [
            _missing("mrn"),
            _missing("assessment_id"),
            pl.coalesce(
                _missing("scale"),
                _unless(known_scale, "unknown scale in column 'scale' (ecog, karnofsky, lansky)"),
            ),
            pl.coalesce(
                _missing("score"),
                _unless(score.is_not_null(), "non-integer value in column 'score'"),
                _unless(
                    ~known_scale | score.is_between(0, maximum),
                    "score out of range for its scale",
                ),
            ),
            _bad_timestamp("assessed_at", required=True),
        ],
        timestamps=("assessed_at",),
    )


def _contract_tumor_measurements() -> Mapping:
    unit = _lower("size_unit")
    method = pl.col("method").str.strip_chars().str.to_uppercase()
    dicom = method.is_in(list(DICOM_MODALITIES))
    snomed = method.str.contains(r"^[0-9]{6,18}$")
    coded = dicom | snomed
    return Mapping(
        "observations",
        {
            "record_id": pl.col("measurement_id"),
            **_subject(),
            "category": _const("imaging"),
            "loinc": _const(LOINC_TUMOR_SIZE),
            "code_display": _const("Tumor size"),
            "value_type": _const("quantity"),
            "value_numeric": _numeric("size_value"),
            "value_comparator": _comparator("size_value"),
            "value_unit": unit,
            "status": _status("status", "final"),
            "effective_at": _timestamp("measured_at"),
            "method_code": pl.when(coded).then(method),
            "method_system": pl.when(dicom).then(_const(DICOM)).when(snomed).then(_const(SNOMED)),
            "method_text": pl.when(~coded).then(pl.col("method")),
            "body_site_code": pl.col("body_site_code"),
            "body_site_system": pl.when(pl.col("body_site_code").is_not_null()).then(
                _const(SNOMED)
            ),
            "body_site_text": pl.col("body_site_text"),
            "short_axis_value": _numeric("short_axis_value"),
            "short_axis_unit": pl.when(pl.col("short_axis_value").is_not_null()).then(unit),
        },
        [
            _missing("mrn"),
            _missing("measurement_id"),
            _bad_number("size_value", required=True),
            _bad_number("short_axis_value"),
            pl.coalesce(
                _missing("size_unit"),
                _unless(unit.is_in(["mm", "cm"]), "size_unit must be mm or cm"),
            ),
            _bad_timestamp("measured_at", required=True),
        ],
        timestamps=("measured_at",),
        numbers=("size_value", "short_axis_value"),
    )


def _contract_conditions() -> Mapping:
    return Mapping(
        "conditions",
        {
            "record_id": pl.col("condition_id"),
            **_subject(),
            "code_system": _code_system("code_system"),
            "code": pl.col("code"),
            "code_display": pl.col("display"),
            "code_text": pl.col("display"),
            "alt_code_system": _code_system("alt_code_system"),
            "alt_code": pl.col("alt_code"),
            "alt_code_display": pl.col("alt_display"),
            schema.CODING_LIST: _codings(
                "code",
                ("code_system", "code", "display"),
                ("alt_code_system", "alt_code", "alt_display"),
            ),
            "clinical_status": _lower("clinical_status"),
            "verification_status": _lower("verification_status"),
            "onset_at": _timestamp("onset_date"),
            "recorded_at": _timestamp("recorded_date"),
            "abatement_at": _timestamp("abatement_date"),
        },
        [
            _missing("mrn"),
            _missing("condition_id"),
            _unless(
                pl.col("code").is_not_null() | pl.col("display").is_not_null(),
                "condition has neither code nor display",
            ),
            _bad_timestamp("onset_date"),
            _bad_timestamp("recorded_date"),
            _bad_timestamp("abatement_date"),
        ],
        timestamps=("onset_date", "recorded_date", "abatement_date"),
    )


def _contract_medications() -> Mapping:
    record_type = _lower("record_type")
    resource_type = pl.coalesce(
        record_type.replace_strict(RECORD_TYPES, default=None, return_dtype=pl.String),
        pl.when(record_type.is_null()).then(_const(DEFAULT_RECORD_TYPE)),
    )
    return Mapping(
        "medications",
        {
            "record_id": pl.col("medication_id"),
            **_subject(),
            "resource_type": resource_type,
            "code_system": _code_system("code_system"),
            "code": pl.col("code"),
            "code_display": pl.col("name"),
            "code_text": pl.col("name"),
            schema.CODING_LIST: _codings(
                "medication", ("code_system", "code", "name"), ("alt_code_system", "alt_code", None)
            ),
            "status": _lower("status"),
            "intent": _lower("intent"),
            "start_at": _timestamp("start_date"),
            "end_at": _timestamp("end_date"),
        },
        [
            _missing("mrn"),
            _missing("medication_id"),
            _unless(
                resource_type.is_not_null(),
                "unknown record_type (request, statement, administration)",
            ),
            _unless(
                pl.col("code").is_not_null() | pl.col("name").is_not_null(),
                "medication has neither code nor name",
            ),
            _bad_timestamp("start_date", required=True),
            _bad_timestamp("end_date"),
        ],
        timestamps=("start_date", "end_date"),
    )


def _contract_patient_merges() -> Mapping:
    same = pl.col("retired_mrn") == pl.col("surviving_mrn")
    return Mapping(
        "patient_merges",
        {
            "record_id": pl.col("retired_mrn"),  # one merge per retired MRN; a re-delivery
            **_subject("surviving_mrn"),  # with another survivor is a new version
            "prior_mrn": pl.col("retired_mrn"),
            "event_type": _const("csv"),
            "merged_at": _timestamp("merged_at"),
        },
        [
            _missing("retired_mrn"),
            _missing("surviving_mrn"),
            _unless(~same.fill_null(False), "retired_mrn and surviving_mrn are the same"),
            _bad_timestamp("merged_at"),
        ],
        timestamps=("merged_at",),
    )


def _codings(element: str, *columns: tuple[str, str, str | None]) -> pl.Expr:
    """Every coding of the row, (system, code, display) column triplets in order, as
    ``schema.CODING_ITEM`` structs (docs/decisions.md "Every coding is kept")."""
    items = [
        pl.struct(
            pl.lit(element, dtype=pl.String).alias("element"),
            _code_system(system).alias("system"),
            pl.col(code).alias("code"),
            (pl.col(display) if display else pl.lit(None, dtype=pl.String)).alias("display"),
        )
        for system, code, display in columns
    ]
    return pl.concat_list(items)


CONTRACT_MAPPINGS: dict[str, Callable[[], Mapping]] = {
    "patients": _contract_patients,
    "lab_results": _contract_lab_results,
    "vitals": _contract_vitals,
    "performance_status": _contract_performance_status,
    "tumor_measurements": _contract_tumor_measurements,
    "conditions": _contract_conditions,
    "medications": _contract_medications,
    "patient_merges": _contract_patient_merges,
}
