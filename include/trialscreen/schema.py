"""The warehouse contract for landed feeds: every raw, quarantine and audit table.

Parsers (``trialscreen.feeds.*``) return polars frames whose columns are exactly
``RAW_COLUMNS[entity]`` (the loader adds ``run_id`` and ``loaded_at``). One raw table per
feed and entity: ``raw.<feed>_<entity>``, e.g. ``raw.fhir_observations``.

Timestamps are kept as sent (docs/decisions.md, "Timestamps as sent"): the sender's wall
clock, naive (``Datetime("us")``, never converted at ingest), beside ``<column>_offset_min``,
the UTC offset the sender gave in minutes (null when none; ``trialscreen.feeds.timestamps``);
staging places them in time with the hospital time zone. Dates are ``Date``. Values are kept as
the feed sent them (raw unit spelling, raw status code mapped to the FHIR vocabulary);
normalization of codes and units happens in dbt staging.
"""

from __future__ import annotations

import polars as pl

FEEDS = ("fhir", "hl7", "csv")
ENTITIES = ("patients", "observations", "conditions", "medications", "patient_merges")

TS = pl.Datetime("us")
OFFSET_MIN = pl.Int32()  # <timestamp column>_offset_min: minutes east of UTC as sent

# Lineage columns every parser fills, first in every raw table.
LINEAGE: dict[str, pl.DataType] = {
    "source_file": pl.String(),  # path relative to the drop directory
    "source_position": pl.Int64(),  # 1-based line (NDJSON/CSV row) / entry / message index
    "record_id": pl.String(),  # natural id: FHIR resource id, HL7 MSH-10|OBX-1|OBX-3, CSV key
    "record_hash": pl.String(),  # sha256 hex of the record content; (record_id, hash) dedups
}

RAW_COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "patients": {
        **LINEAGE,
        # FHIR Patient.id (also reachable via fullUrl); HL7/CSV: the MRN
        "patient_ref": pl.String(),
        "mrn": pl.String(),
        "family_name": pl.String(),
        "given_name": pl.String(),
        "birth_date": pl.Date(),
        "sex": pl.String(),  # as sent: male/female/other/unknown, M/F/O/U
        "deceased_at": TS,
        "deceased_at_offset_min": OFFSET_MIN,
    },
    "observations": {
        **LINEAGE,
        "patient_ref": pl.String(),  # FHIR: Patient.id the subject resolves to; HL7/CSV: MRN
        "mrn": pl.String(),  # HL7/CSV: the MRN; FHIR: null (resolved in staging via patients)
        "category": pl.String(),  # laboratory, vital-signs, survey, exam, imaging, ...
        "loinc": pl.String(),  # LOINC code when the source gave one (either HL7 triplet)
        "local_code": pl.String(),  # non-LOINC code (HL7 local, CSV local), mapped by a seed
        "local_system": pl.String(),
        "code_display": pl.String(),
        "value_type": pl.String(),  # quantity, coded, string, integer, none
        "value_numeric": pl.Float64(),
        "value_comparator": pl.String(),  # <, <=, >, >= or null
        "value_unit": pl.String(),  # human unit (FHIR unit / HL7 OBX-6 / CSV unit)
        "value_unit_code": pl.String(),  # UCUM code when given separately (FHIR code)
        "value_code": pl.String(),  # coded value (SNOMED/LOINC answer)
        "value_code_system": pl.String(),
        "value_text": pl.String(),  # string value, or the original value text
        "ref_low": pl.Float64(),
        "ref_high": pl.Float64(),
        "ref_text": pl.String(),  # the reference range as sent
        "abnormal_flag": pl.String(),
        "status": pl.String(),  # FHIR vocabulary: final, amended, corrected, preliminary,
        # registered, cancelled, entered-in-error (HL7 F/C/P/X/D/W mapped), else raw lowercased
        "effective_at": TS,  # effectiveDateTime / effectivePeriod.start / OBX-14 / OBR-7
        "issued_at": TS,  # FHIR issued / HL7 MSH-7
        "effective_at_offset_min": OFFSET_MIN,
        "issued_at_offset_min": OFFSET_MIN,
        "order_id": pl.String(),  # HL7 OBR-3 filler order number / FHIR basedOn / CSV order_id
        "method_code": pl.String(),  # tumor measurements: DICOM modality or SNOMED method
        "method_system": pl.String(),
        "method_text": pl.String(),
        "body_site_code": pl.String(),
        "body_site_system": pl.String(),
        "body_site_text": pl.String(),
        # tumor measurements: the short axis (FHIR component LOINC 33729-5, CSV short_axis_value)
        # beside the longest diameter in value_numeric; unit as sent (mm, cm)
        "short_axis_value": pl.Float64(),
        "short_axis_unit": pl.String(),
        # the sending laboratory/facility that keys local codes (seed local_lab_codes):
        # HL7 MSH-4 namespace id, FHIR Observation.meta.source, CSV optional facility column
        "facility": pl.String(),
    },
    "conditions": {
        **LINEAGE,
        "patient_ref": pl.String(),
        "mrn": pl.String(),
        "code_system": pl.String(),  # full URI (icd-10-cm, icd-o-3, snomed) or short name
        "code": pl.String(),
        "code_display": pl.String(),
        "code_text": pl.String(),
        # a second coding of the same condition (FHIR CodeableConcept with several codings,
        # e.g. ICD-10-CM C49.2 + ICD-O-3 morphology 9581/3); matched like the first
        "alt_code_system": pl.String(),
        "alt_code": pl.String(),
        "alt_code_display": pl.String(),
        "clinical_status": pl.String(),
        "verification_status": pl.String(),
        "onset_at": TS,
        "recorded_at": TS,
        "abatement_at": TS,
        "onset_at_offset_min": OFFSET_MIN,
        "recorded_at_offset_min": OFFSET_MIN,
        "abatement_at_offset_min": OFFSET_MIN,
    },
    "medications": {
        **LINEAGE,
        "patient_ref": pl.String(),
        "mrn": pl.String(),
        "resource_type": pl.String(),  # MedicationRequest/Statement/Administration, or csv
        "code_system": pl.String(),  # rxnorm / atc URI, or null for text only
        "code": pl.String(),
        "code_display": pl.String(),
        "code_text": pl.String(),
        "status": pl.String(),
        # MedicationRequest.intent (proposal/plan are not therapy given); null elsewhere
        "intent": pl.String(),
        "start_at": TS,
        "end_at": TS,
        "start_at_offset_min": OFFSET_MIN,
        "end_at_offset_min": OFFSET_MIN,
    },
    # A hospital retiring an MRN into another (docs/decisions.md "Patient merges and test
    # patients"): HL7 ADT A40/A34/A18 (MRG-1 prior identifier -> PID-3 surviving) and the CSV
    # extract's patient_merges.csv. One row per merge; chains resolve in dbt.
    "patient_merges": {
        **LINEAGE,
        "patient_ref": pl.String(),  # the surviving MRN (as for every HL7/CSV record)
        "mrn": pl.String(),  # the surviving MRN
        "prior_mrn": pl.String(),  # the retired MRN: its records count for the surviving one
        "event_type": pl.String(),  # HL7 trigger event (A40, A34, A18) or csv
        "merged_at": TS,  # EVN-2 (else MSH-7) / CSV merged_at
        "merged_at_offset_min": OFFSET_MIN,
    },
}

# Every coding of a condition or medication (docs/decisions.md "Every coding is kept"): a
# long child table per feed, ``raw.<feed>_codings``, with the lineage of its parent record.
# The entity table keeps its first (preferred) coding as before. Child rows are not records:
# they are loaded with their parent's (record_id, record_hash) dedup and not counted.
CODINGS = "codings"
CODING_COLUMNS: dict[str, pl.DataType] = {
    **LINEAGE,  # the parent record's
    "entity": pl.String(),  # conditions | medications
    "element": pl.String(),  # code (Condition.code) | medication (the drug)
    "seq": pl.Int64(),  # 1-based order of the coding within (record, element)
    "system": pl.String(),  # as sent: URI, OID (urn:oid:...), HL7 table 0396 name, short name
    "code": pl.String(),
    "display": pl.String(),
}
# Parsers carry a record's codings as a list column until ``split_codings`` turns them into
# child rows (the list never reaches a raw entity table).
CODING_LIST = "_codings"
CODING_ITEM = pl.Struct(
    {"element": pl.String(), "system": pl.String(), "code": pl.String(), "display": pl.String()}
)
# Every raw table of a feed: the entities and the codings child table.
RAW_TABLES: tuple[str, ...] = (*ENTITIES, CODINGS)
TABLE_COLUMNS: dict[str, dict[str, pl.DataType]] = {**RAW_COLUMNS, CODINGS: CODING_COLUMNS}

# Added by the loader to every raw table. ``load_id`` increases with every ingest run of a
# warehouse (``audit.loads``); rows above the last load a quality gate passed are the ones
# not validated yet (docs/decisions.md, "Load id").
LOAD_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "loaded_at": TS,
    "load_id": pl.Int64(),
}

QUARANTINE_COLUMNS: dict[str, pl.DataType] = {
    "feed": pl.String(),
    "scope": pl.String(),  # "record" or "file"
    "source_file": pl.String(),
    "source_position": pl.Int64(),  # null for a whole file
    "error": pl.String(),  # specific, human-readable reason; never contains PHI values
    "raw_payload": pl.String(),  # the record (or first 64 KiB of the file) as read
}


def raw_table(feed: str, entity: str) -> str:
    return f"{feed}_{entity}"


# Empty frames are cloned from templates: building one from a schema costs ~0.5 ms, which a
# parser paid several times for each of 57,000 bundles of a 1M drop; a clone costs ~2 us.
_EMPTY: dict[str, pl.DataFrame] = {}
# each entity's column names and types, in order, for the cheap "already conformed" test
_NAMES = {entity: list(columns) for entity, columns in TABLE_COLUMNS.items()}
_DTYPES = {entity: list(columns.values()) for entity, columns in TABLE_COLUMNS.items()}


def empty_frame(entity: str) -> pl.DataFrame:
    template = _EMPTY.get(entity)
    if template is None:
        template = _EMPTY[entity] = pl.DataFrame(schema=TABLE_COLUMNS[entity])
    return template.clone()


def conform(entity: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast a parser's frame to the raw contract (missing columns become null);
    a frame already in the contract (names, order and types) is returned as it is."""
    schema = TABLE_COLUMNS[entity]
    if frame.columns == _NAMES[entity] and frame.dtypes == _DTYPES[entity]:
        return frame
    missing = [
        pl.lit(None, dtype=dt).alias(c) for c, dt in schema.items() if c not in frame.columns
    ]
    if missing:
        frame = frame.with_columns(missing)
    return frame.select([pl.col(c).cast(dt, strict=False) for c, dt in schema.items()])


_EMPTY_QUARANTINE = pl.DataFrame(schema=QUARANTINE_COLUMNS)


def quarantine_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    if not rows:
        return _EMPTY_QUARANTINE.clone()
    return pl.DataFrame(rows, schema=QUARANTINE_COLUMNS)


def split_codings(entity: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The child rows (``CODING_COLUMNS``) of a parser frame's ``CODING_LIST`` column: one per
    coding with a code, numbered per (record, element) in the order sent."""
    if CODING_LIST not in frame.columns or not frame.height:
        return empty_frame(CODINGS)
    keys = ["source_file", "source_position", "record_id", "element"]
    rows = (
        frame.select(*LINEAGE, pl.col(CODING_LIST).cast(pl.List(CODING_ITEM)))
        .explode(CODING_LIST)
        .unnest(CODING_LIST)
        .filter(pl.col("code").is_not_null() & (pl.col("code").str.strip_chars() != ""))
        .with_columns(
            pl.lit(entity).alias("entity"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(keys).alias("seq"),
        )
    )
    return conform(CODINGS, rows)


def timestamp_columns(entity: str) -> list[str]:
    """The timestamp columns of an entity's raw table (each has an ``_offset_min`` partner)."""
    columns = RAW_COLUMNS.get(entity, {})
    return [c for c, dt in columns.items() if dt == TS and f"{c}_offset_min" in columns]
