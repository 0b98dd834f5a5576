"""Resource mappings: decoded FHIR fields -> raw entity columns plus a PHI-free ``_error``.

One ``Mapping`` per entity (``MAPPERS``), built from polars expression helpers; the resource
types the pipeline uses and the entity each lands in are ``USED_TYPES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from trialscreen import schema
from trialscreen.codesystems import ATC, DICOM, ICD10CM, ICDO3, LOINC, RXNORM, SNOMED
from trialscreen.feeds.timestamps import offset_column, sent_series

# Resource types the pipeline uses, and the raw entity each one lands in.
USED_TYPES: dict[str, str] = {
    "Patient": "patients",
    "Observation": "observations",
    "Condition": "conditions",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
    "MedicationAdministration": "medications",
}


# ---------------------------------------------------------------------------------------
# Expression helpers


def _f(expr: pl.Expr, *path: str) -> pl.Expr:
    for name in path:
        expr = expr.struct.field(name)
    return expr


def _first(expr: pl.Expr, *path: str) -> pl.Expr:
    """First element of a list column, then a struct path into it."""
    return _f(expr.list.first(), *path)


def _coding_where(codings: pl.Expr, system: str) -> pl.Expr:
    """The first coding of a CodeableConcept.coding list with the given system."""
    return codings.list.filter(pl.element().struct.field("system") == system).list.first()


_CODING = pl.Struct({"system": pl.String(), "code": pl.String(), "display": pl.String()})


def _preferred_coding(codings: pl.Expr, systems: tuple[str, ...]) -> pl.Expr:
    """First coding in the preferred system order, else the first coding."""
    return pl.coalesce(*[_coding_where(codings, s) for s in systems], codings.list.first())


def _timestamp_columns(frame: pl.DataFrame, names: list[str]) -> list[pl.Series]:
    """For each timestamp name, the wall clock as sent of ``_<name>_text`` and, for a raw
    timestamp column (``*_at``), ``<name>_offset_min``: every text of every name parsed in
    one call (``timestamps.sent_series``; a call per column cost a fixed ~10 ms, four to
    six times per mapping query).

    FHIR date/dateTime/instant: year and year-month mean the first day; a date is a local
    date (no offset). FHIR requires an offset with a time; a missing one is left null (the
    hospital's zone applies in staging). A value that cannot be represented has a null wall.
    Keeping the text lets the checks see "present but unparseable" without parsing twice.
    """
    if not names:
        return []
    height = frame.height
    texts = pl.concat([frame.get_column(f"_{name}_text") for name in names], rechunk=True)
    sent = sent_series(texts, csv=False)
    wall, offset = sent.struct.field("wall"), sent.struct.field("offset")
    out = []
    for i, name in enumerate(names):
        out.append(wall.slice(i * height, height).alias(name))
        if name.endswith("_at"):
            out.append(offset.slice(i * height, height).alias(offset_column(name)))
    return out


def _bad_ts(name: str) -> pl.Expr:
    return pl.col(f"_{name}_text").is_not_null() & pl.col(name).is_null()


def _record_id(rtype: str) -> pl.Expr:
    """Resource id; a resource without one gets ``<type>#<position>`` (unique in the file)."""
    fallback = pl.lit(f"{rtype}#") + pl.col("source_position").cast(pl.String)
    return pl.coalesce(pl.col("id"), fallback).alias("record_id")


def _subject_columns(resolve: Resolver) -> list[pl.Expr]:
    """``_ref``: the subject (or STU3-style ``patient``) reference with bundle fullUrls
    resolved; ``patient_ref``: the Patient id it points to.

    ``Patient/123`` (relative, absolute or versioned) -> 123; ``urn:uuid:X`` not defined
    in the bundle -> X.
    """
    ref = resolve(
        pl.coalesce(_f(pl.col("subject"), "reference"), _f(pl.col("patient"), "reference"))
    )
    patient_id = pl.coalesce(
        ref.str.extract(r"(?:^|/)Patient/([^/]+)", 1),
        ref.str.extract(r"^urn:uuid:(.+)$", 1),
    )
    return [ref.alias("_ref"), patient_id.alias("patient_ref")]


Resolver = Callable[[pl.Expr], pl.Expr]


def _dict_resolver(refs: dict[str, str]) -> Resolver:
    """One file's bundle references: fullUrl -> "Type/id"; anything else is kept."""

    def resolve(ref: pl.Expr) -> pl.Expr:
        return ref.replace(refs) if refs else ref

    return resolve


def _batch_resolver(keys: pl.Series, targets: pl.Series) -> Resolver:
    """Many files' bundle references: keys are ``<_file> NUL <fullUrl>``, so a fullUrl only
    resolves within the file (bundle) that defined it."""

    def resolve(ref: pl.Expr) -> pl.Expr:
        if not keys.len():
            return ref
        key = pl.concat_str([pl.col("_file").cast(pl.String), pl.lit("\x00"), ref])
        return key.replace_strict(keys, targets, default=ref, return_dtype=pl.String())

    return resolve


def _subject_checks(label: pl.Expr) -> list[Check]:
    return [
        (pl.col("_ref").is_null(), label + " has no subject reference"),
        (pl.col("patient_ref").is_null(), label + " subject is not a Patient reference"),
    ]


Check = tuple[pl.Expr, pl.Expr]


def _error_column(checks: list[Check]) -> pl.Expr:
    """``_error``: the first failed check's PHI-free message, null when all pass."""
    expr: pl.Expr = pl.lit(None, dtype=pl.String())
    for cond, message in reversed(checks):
        expr = pl.when(cond).then(message).otherwise(expr)
    return expr.alias("_error")


def _msg(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String())


@dataclass(frozen=True)
class Mapping:
    """How one entity is derived: computed columns and timestamp texts first, then the
    timestamps parsed together, then the derived stages (each may use what came before),
    then the checks that use them (``apply``)."""

    columns: list[pl.Expr]
    checks: list[Check]
    # output name -> its source text, kept as ``_<name>_text`` (``_timestamp_columns``)
    timestamps: dict[str, pl.Expr] = field(default_factory=dict)
    derived: list[list[pl.Expr]] = field(default_factory=list)


def apply(mapping: Mapping, frame: pl.LazyFrame) -> pl.DataFrame:
    """``frame`` (decoded fields and lineage) with the mapping's columns and ``_error``."""
    texts = [text.alias(f"_{name}_text") for name, text in mapping.timestamps.items()]
    out = frame.with_columns(*mapping.columns, *texts).collect()
    query = out.with_columns(_timestamp_columns(out, list(mapping.timestamps))).lazy()
    for stage in mapping.derived:
        query = query.with_columns(stage)
    return query.with_columns(_error_column(mapping.checks)).collect()


# ---------------------------------------------------------------------------------------
# Mappers: decoded resource fields -> raw entity columns + ``_error``


def _patients(resolve: Resolver) -> Mapping:
    ids = pl.col("identifier").list.filter(_f(pl.element(), "value").is_not_null())
    is_mr = (
        _f(pl.element(), "type", "coding")
        .list.eval(pl.element().struct.field("code") == "MR")
        .list.any()
    )
    mrn = pl.coalesce(_f(ids.list.filter(is_mr).list.first(), "value"), _first(ids, "value"))
    name = pl.col("name").list.first()
    columns = [
        pl.col("id").alias("patient_ref"),
        mrn.alias("mrn"),
        _f(name, "family").alias("family_name"),
        _f(name, "given").list.join(" ").alias("given_name"),
        pl.col("gender").alias("sex"),
    ]
    timestamps = {"birth_ts": pl.col("birthDate"), "deceased_at": pl.col("deceasedDateTime")}
    derived = [[pl.col("birth_ts").dt.date().alias("birth_date")]]
    checks = [
        (pl.col("mrn").is_null(), _msg("patient has no identifier (no MRN)")),
        (_bad_ts("birth_ts"), _msg("patient birthDate is not a valid date")),
        (_bad_ts("deceased_at"), _msg("patient deceasedDateTime is not a valid date/time")),
    ]
    return Mapping(columns, checks, timestamps, derived)


def _observations(resolve: Resolver) -> Mapping:
    codings = _f(pl.col("code"), "coding")
    loinc = _coding_where(codings, LOINC)
    first = codings.list.first()
    vcc = pl.col("valueCodeableConcept")
    # mCODE TumorSize sends the size as components, not value[x]: the longest dimension
    # (33728-7) stands in for an absent valueQuantity, the first additional dimension
    # (33729-5) is the short axis (docs/decisions.md "Tumour measurements as mCODE sends them")
    vq = pl.coalesce(pl.col("valueQuantity"), _component_quantity(TUMOR_LONGEST_DIMENSION))
    short_axis = _component_quantity(TUMOR_ADDITIONAL_DIMENSION)
    vcc_first = _first(_f(vcc, "coding"))
    effective = pl.coalesce(
        pl.col("effectiveDateTime"), _f(pl.col("effectivePeriod"), "start"), pl.col("issued")
    )
    rng = pl.col("referenceRange").list.first()
    value_type = (
        pl.when(pl.col("valueQuantity").is_not_null())
        .then(pl.lit("quantity"))
        .when(vq.is_not_null())  # the longest dimension of a tumor (not a nodal short axis)
        .then(pl.lit("component"))
        .when(vcc.is_not_null())
        .then(pl.lit("coded"))
        .when(pl.col("valueString").is_not_null())
        .then(pl.lit("string"))
        .when(pl.col("valueInteger").is_not_null())
        .then(pl.lit("integer"))
        .otherwise(pl.lit("none"))
    )
    columns = [
        *_subject_columns(resolve),
        _f(_first(pl.col("category"), "coding").list.first(), "code").alias("category"),
        _f(loinc, "code").alias("loinc"),
        pl.when(loinc.is_null()).then(_f(first, "code")).alias("local_code"),
        pl.when(loinc.is_null()).then(_f(first, "system")).alias("local_system"),
        pl.coalesce(_f(pl.col("code"), "text"), _f(loinc, "display"), _f(first, "display")).alias(
            "code_display"
        ),
        value_type.alias("value_type"),
        pl.coalesce(_f(vq, "value"), pl.col("valueInteger").cast(pl.Float64())).alias(
            "value_numeric"
        ),
        _f(vq, "comparator").alias("value_comparator"),
        _f(vq, "unit").alias("value_unit"),
        _f(vq, "code").alias("value_unit_code"),
        _f(vcc_first, "code").alias("value_code"),
        _f(vcc_first, "system").alias("value_code_system"),
        pl.coalesce(pl.col("valueString"), _f(vcc, "text"), _f(vcc_first, "display")).alias(
            "value_text"
        ),
        _f(rng, "low", "value").alias("ref_low"),
        _f(rng, "high", "value").alias("ref_high"),
        _f(rng, "text").alias("ref_text"),
        _f(_first(pl.col("interpretation"), "coding").list.first(), "code").alias("abnormal_flag"),
        pl.col("status").str.to_lowercase(),
        _first(pl.col("basedOn"), "reference").alias("order_id"),
        *_concept_columns("method", "method", (DICOM, SNOMED)),
        *_concept_columns("bodySite", "body_site", (SNOMED,)),
        _f(short_axis, "value").alias("short_axis_value"),
        pl.coalesce(_f(short_axis, "unit"), _f(short_axis, "code")).alias("short_axis_unit"),
        # the sender that keys local codes (seed local_lab_codes facility); null when absent
        _f(pl.col("meta"), "source").alias("facility"),
    ]
    checks = [
        *_subject_checks(_msg("observation")),
        (
            pl.col("loinc").is_null() & pl.col("local_code").is_null(),
            _msg("observation has no code"),
        ),
        (
            pl.col("_effective_at_text").is_null(),
            _msg("observation has no effective time (effective[x] or issued)"),
        ),
        (_bad_ts("effective_at"), _msg("observation effective time is not a valid date/time")),
        (_bad_ts("issued_at"), _msg("observation issued is not a valid date/time")),
    ]
    return Mapping(columns, checks, {"effective_at": effective, "issued_at": pl.col("issued")})


TUMOR_LONGEST_DIMENSION = "33728-7"  # LOINC Size.maximum dimension in Tumor (mCODE TumorSize)
TUMOR_ADDITIONAL_DIMENSION = "33729-5"  # LOINC Size additional dimension in Tumor


def _component_quantity(loinc: str) -> pl.Expr:
    """valueQuantity of the first Observation.component coded with ``loinc``."""
    coded = (
        pl.element()
        .struct.field("code")
        .struct.field("coding")
        .list.eval(pl.element().struct.field("code") == loinc)
        .list.any()
    )
    return (
        pl.col("component")
        .list.eval(pl.element().filter(coded))
        .list.first()
        .struct.field("valueQuantity")
    )


def _concept_columns(source: str, prefix: str, preferred: tuple[str, ...] = ()) -> list[pl.Expr]:
    """code/system of the first coding (of the first preferred system that has one), and text
    (else that coding's display)."""
    cc = pl.col(source)
    first = _preferred_coding(_f(cc, "coding"), preferred)
    return [
        _f(first, "code").alias(f"{prefix}_code"),
        _f(first, "system").alias(f"{prefix}_system"),
        pl.coalesce(_f(cc, "text"), _f(first, "display")).alias(f"{prefix}_text"),
    ]


def _second_coding(codings: pl.Expr, primary: pl.Expr, systems: tuple[str, ...]) -> pl.Expr:
    """The first coding, in ``systems`` order, of a system other than the primary's: a
    Condition coded ICD-10-CM C49.2 *and* ICD-O-3 9581/3 must match on the morphology too."""
    system = _f(primary, "system")
    return pl.coalesce(*[pl.when(system != s).then(_coding_where(codings, s)) for s in systems])


def _coding_items(codings: pl.Expr, element: str) -> pl.Expr:
    """A CodeableConcept.coding list as ``schema.CODING_ITEM`` structs (every coding kept:
    docs/decisions.md "Every coding is kept")."""
    return codings.list.eval(
        pl.struct(
            pl.lit(element, dtype=pl.String()).alias("element"),
            pl.element().struct.field("system"),
            pl.element().struct.field("code"),
            pl.element().struct.field("display"),
        )
    ).cast(pl.List(schema.CODING_ITEM))


def _reference_item(ref: pl.Expr) -> pl.Expr:
    """A ``medicationReference`` that is not contained, as a coding of element ``reference``:
    dbt resolves it to the Medication resource (same bundle or a Medication NDJSON file)."""
    item = pl.struct(
        pl.lit("reference", dtype=pl.String()).alias("element"),
        pl.lit(None, dtype=pl.String()).alias("system"),
        ref.alias("code"),
        pl.lit(None, dtype=pl.String()).alias("display"),
    )
    return (
        pl.when(ref.is_not_null() & ~ref.str.starts_with("#"))
        .then(pl.concat_list(item))
        .otherwise(pl.lit([], dtype=pl.List(schema.CODING_ITEM)))
    )


def _contained_medication_items(ref: pl.Expr) -> pl.Expr:
    """Codings of the contained Medication a ``#id`` reference points to (a resource contains
    one Medication in practice; with several, the codings of all of them are kept)."""
    meds = pl.col("contained").list.eval(
        pl.element().filter(pl.element().struct.field("resourceType") == "Medication")
    )
    codings = meds.list.eval(
        pl.element().struct.field("code").struct.field("coding").explode()
    ).list.drop_nulls()
    return (
        pl.when(ref.str.starts_with("#"))
        .then(_coding_items(codings, "medication"))
        .otherwise(pl.lit([], dtype=pl.List(schema.CODING_ITEM)))
    )


def _conditions(resolve: Resolver) -> Mapping:
    codings = _f(pl.col("code"), "coding")
    coding = _preferred_coding(codings, (ICD10CM, ICDO3, SNOMED))
    alt = _second_coding(codings, coding, (ICDO3, SNOMED, ICD10CM))
    onset = pl.coalesce(pl.col("onsetDateTime"), _f(pl.col("onsetPeriod"), "start"))
    columns = [
        *_subject_columns(resolve),
        _f(coding, "system").alias("code_system"),
        _f(coding, "code").alias("code"),
        _f(coding, "display").alias("code_display"),
        _f(pl.col("code"), "text").alias("code_text"),
        _f(alt, "system").alias("alt_code_system"),
        _f(alt, "code").alias("alt_code"),
        _f(alt, "display").alias("alt_code_display"),
        _coding_items(codings, "code").alias(schema.CODING_LIST),
        _f(_first(_f(pl.col("clinicalStatus"), "coding")), "code").alias("clinical_status"),
        _f(_first(_f(pl.col("verificationStatus"), "coding")), "code").alias("verification_status"),
    ]
    timestamps = {
        "onset_at": onset,
        "recorded_at": pl.col("recordedDate"),
        "abatement_at": pl.col("abatementDateTime"),
    }
    checks = [
        *_subject_checks(_msg("condition")),
        (
            pl.col("code").is_null() & pl.col("code_text").is_null(),
            _msg("condition has no code or text"),
        ),
        (_bad_ts("onset_at"), _msg("condition onset is not a valid date/time")),
        (_bad_ts("recorded_at"), _msg("condition recordedDate is not a valid date/time")),
        (_bad_ts("abatement_at"), _msg("condition abatementDateTime is not a valid date/time")),
    ]
    return Mapping(columns, checks, timestamps)


def _medications(resolve: Resolver) -> Mapping:
    med = pl.col("medicationCodeableConcept")
    # medicationReference: bundle fullUrls resolved like subjects (once: the column
    # ``_medication_ref``); a contained Medication ("#id") gives its codings here, any other
    # reference is resolved in dbt
    ref = pl.col("_medication_ref")
    all_codings = pl.concat_list(
        _coding_items(
            _f(med, "coding").fill_null(pl.lit([], dtype=pl.List(_CODING))), "medication"
        ),
        _contained_medication_items(ref),
    )
    coding = _preferred_coding(
        pl.col("_all_codings").list.eval(
            pl.struct(
                pl.element().struct.field("system"),
                pl.element().struct.field("code"),
                pl.element().struct.field("display"),
            )
        ),
        (RXNORM, ATC),
    )
    start = pl.coalesce(
        pl.col("authoredOn"), _f(pl.col("effectivePeriod"), "start"), pl.col("effectiveDateTime")
    )
    columns = [
        *_subject_columns(resolve),
        pl.col("resourceType").alias("resource_type"),
        pl.coalesce(_f(med, "text"), _f(pl.col("medicationReference"), "display")).alias(
            "code_text"
        ),
        resolve(_f(pl.col("medicationReference"), "reference")).alias("_medication_ref"),
        pl.col("status").str.to_lowercase(),
        pl.col("intent").str.to_lowercase(),
    ]
    timestamps = {"start_at": start, "end_at": _f(pl.col("effectivePeriod"), "end")}
    # the codings list is built once and read twice (the preferred coding, every coding)
    derived = [
        [all_codings.alias("_all_codings")],
        [
            _f(coding, "system").alias("code_system"),
            _f(coding, "code").alias("code"),
            _f(coding, "display").alias("code_display"),
            pl.concat_list(pl.col("_all_codings"), _reference_item(ref)).alias(schema.CODING_LIST),
        ],
    ]
    label = pl.col("resourceType")
    checks = [
        *_subject_checks(label),
        (
            pl.col("code").is_null()
            & pl.col("code_text").is_null()
            & pl.col("_medication_ref").is_null(),
            label + " has no medication code, text or reference",
        ),
        (_bad_ts("start_at"), label + " start (authoredOn/effective[x]) is not a valid date/time"),
        (_bad_ts("end_at"), label + " effectivePeriod.end is not a valid date/time"),
    ]
    return Mapping(columns, checks, timestamps, derived)


MAPPERS = {
    "patients": _patients,
    "observations": _observations,
    "conditions": _conditions,
    "medications": _medications,
}
