"""The flat CSV extract contract (SPEC §2.3): one UTF-8 file per entity, header row required.

Dates are ISO 8601 (``YYYY-MM-DD``); timestamps ISO 8601 with an offset or ``Z`` (naive =
UTC). Empty cells are null. ``value`` cells may carry a comparator prefix (``<0.5``,
``>=10``). Column order does not matter; unknown extra columns are ignored; a missing
required column quarantines the whole file. The README documents every column from here.
"""

from __future__ import annotations

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
        "status": "active | completed | stopped | on-hold | cancelled | draft | entered-in-error",
        "start_date": "start date or timestamp (required)",
        "end_date": "end date or timestamp",
    },
    "tumor_measurements": {
        "mrn": "medical record number (required)",
        "measurement_id": "unique id (required)",
        "size_value": "lesion size (required)",
        "size_unit": "mm | cm (required)",
        "method": "DICOM modality CT, MR, CR, DX, or free text (e.g. 'caliper'); empty = none",
        "body_site_code": "SNOMED body site (59441001 = lymph node: value is the short axis)",
        "body_site_text": "body site text",
        "status": "final | amended | corrected | preliminary | cancelled | entered-in-error",
        "measured_at": "imaging / exam time (required)",
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
}
