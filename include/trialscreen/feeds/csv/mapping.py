"""CSV feed parser (SPEC §2.3) for two dialects, vectorized with polars.

* The TrialScreen flat contract (``csv_contract.CSV_FILES``): one file per entity, lowercase
  headers, the entity named by the file stem (``lab_results.csv``,
  ``lab_results.2026-11-01.csv.gz``).
* The Synthea CSV export (``patients.csv`` ``Id,BIRTHDATE,...``; ``observations.csv``,
  ``conditions.csv``, ``medications.csv``): recognised by its header (``Id`` or UPPERCASE
  names). Synthea has no MRN, so its patient ``Id`` stands in as ``mrn`` and ``patient_ref``.

Every cell is read as a string (``infer_schema=False``) so that nothing is coerced before the
contract decides what it means; a bad cell quarantines its row, never the file. Quarantine
errors name columns, never cell values (a cell may be an MRN or a birth date). The column
documentation lives in ``docs/csv_contract.md``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.csv_contract import CSV_FILES, REQUIRED

FEED = "csv"
PAYLOAD_LIMIT = 64 * 1024  # bytes of a quarantined file kept as its raw payload

POS = "__pos"  # 1-based data row number
ERROR = "__error"  # "; "-joined row errors, null when the row is good
HASH_SOURCE = "__hash_source"
TS, DATE, NUM = "@ts", "@date", "@num"  # suffixes of the parsed copies of a cell

LOINC_PERFORMANCE = {"ecog": "89247-1", "karnofsky": "89243-0", "lansky": "89243-0"}
PERFORMANCE_DISPLAY = {
    "ecog": "ECOG performance status",
    "karnofsky": "Karnofsky performance status",
    "lansky": "Lansky play-performance status",
}
PERFORMANCE_MAX = {"ecog": 5, "karnofsky": 100, "lansky": 100}
LOINC_TUMOR_SIZE = "21889-1"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_MODALITIES = ("CT", "MR", "CR", "DX")
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# Short code-system names (either dialect, compared lowercased) -> URI. "text" means no system.
CODE_SYSTEMS: dict[str, str | None] = {
    "icd-10-cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "icd10cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "icd-o-3": "http://terminology.hl7.org/CodeSystem/icd-o-3",
    "snomed": SNOMED,
    "snomed-ct": SNOMED,
    "snomed ct": SNOMED,
    "sct": SNOMED,
    "loinc": LOINC,
    "rxnorm": RXNORM,
    "atc": "http://www.whocc.no/atc",
    "text": None,
}
RECORD_TYPES = {
    "request": "MedicationRequest",
    "statement": "MedicationStatement",
    "administration": "MedicationAdministration",
}
DEFAULT_RECORD_TYPE = "MedicationStatement"  # an empty record_type: a medication list entry

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
_NUMBER = r"^(?P<cmp><=|>=|<|>)?\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)$"
_LOINC_CODE = r"^\d{1,7}-\d$"
_DUPLICATED = re.compile(r"_duplicated_\d+$")


class UnreadableFileError(Exception):
    """The file cannot be read as UTF-8 CSV; the message is PHI-free."""


@dataclass
class Mapping:
    """How one CSV entity becomes one raw entity: column expressions plus row-error checks.

    Each check is an expression that is a PHI-free error text where the row is bad and null
    where it is fine; a row with any error goes to quarantine with all its errors joined.
    """

    entity: str
    columns: dict[str, pl.Expr]
    checks: list[pl.Expr] = field(default_factory=list)
    # Cells parsed once, before mapping, so columns and checks share one parse.
    timestamps: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()

    def parse_stage(self) -> list[pl.Expr]:
        return [
            *[_parse_timestamp(c).alias(f"{c}{TS}") for c in self.timestamps],
            *[_parse_date(c).alias(f"{c}{DATE}") for c in self.dates],
            *[pl.col(c).str.extract_groups(_NUMBER).alias(f"{c}{NUM}") for c in self.numbers],
        ]


# ---------------------------------------------------------------- public API


def is_csv_file(path: Path) -> bool:
    """A CSV feed file: ``*.csv`` or ``*.csv.gz`` (case-insensitive)."""
    name = Path(path).name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def parse_csv_file(path: Path, root: Path) -> ParsedFile:
    """Parse one CSV feed file of either dialect into raw tables and quarantine rows.

    ``records_in`` counts data rows (a file quarantined as a whole counts as one record), so
    ``records_in == rows_out + quarantined rows`` always holds. Files of the Synthea export
    that the pipeline does not use are counted in ``ignored`` and yield no records.
    """
    path = Path(path)
    source_file = _relative_posix(path, root)
    stem = entity_stem(path)
    try:
        data = _read_bytes(path)
        raw = _read_frame(data)
    except UnreadableFileError as exc:
        return _file_quarantined(source_file, str(exc), _payload_head(path))

    if is_synthea_header(raw.columns):
        return _parse_synthea(raw, stem, source_file, data)
    return _parse_contract(raw, stem, source_file, data)


def entity_stem(path: Path) -> str:
    """The entity a file holds: its name up to the first dot (``lab_results.2026-11-01.csv``)."""
    return Path(path).name.split(".", 1)[0].strip().lower()


def is_synthea_header(columns: list[str]) -> bool:
    """Synthea headers are ``Id`` or UPPERCASE; the contract's are lowercase with ``mrn``."""
    if any(c.strip().lower() == "mrn" for c in columns):
        return False
    return bool(columns) and all(_SYNTHEA_HEADER.match(c.strip()) for c in columns)


# ---------------------------------------------------------------- reading


def _relative_posix(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _read_bytes(path: Path) -> bytes:
    """File bytes, gunzipped for ``.gz``; a truncated or corrupt gzip is unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"cannot read file: {exc.strerror}") from None
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error):
            raise UnreadableFileError("truncated or corrupt gzip stream") from None
    return data


def _read_frame(data: bytes) -> pl.DataFrame:
    """All cells as strings; invalid UTF-8 or broken CSV structure makes the file unreadable."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"not valid UTF-8 (byte offset {exc.start})") from None
    if not data.strip():
        raise UnreadableFileError("empty file: no header row")
    try:
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, raise_if_empty=True)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # polars quotes the offending cell in some messages: keep only the structural reason.
        reason = (
            "rows have more fields than the header"
            if "more fields" in first_line
            else "malformed CSV (unbalanced quotes or inconsistent fields)"
        )
        raise UnreadableFileError(f"not valid CSV: {reason}") from None
    except pl.exceptions.DuplicateError:
        raise UnreadableFileError("not valid CSV: duplicate column names in the header") from None
    # polars renames a repeated header to "<name>_duplicated_<n>": which one is meant is unknown.
    if any(_DUPLICATED.search(c) for c in frame.columns):
        raise UnreadableFileError("not valid CSV: duplicate column names in the header")
    return frame


def _payload_head(path: Path) -> str:
    """The first 64 KiB of the file as read (for the file-scope quarantine row)."""
    try:
        with path.open("rb") as handle:
            return handle.read(PAYLOAD_LIMIT).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _file_quarantined(source_file: str, error: str, payload: str) -> ParsedFile:
    row: dict[str, object] = {
        "feed": FEED,
        "scope": "file",
        "source_file": source_file,
        "source_position": None,
        "error": error,
        "raw_payload": payload,
    }
    return ParsedFile(
        feed=FEED,
        source_file=source_file,
        quarantined=schema.quarantine_frame([row]),
        records_in=1,
    )


def _data_head(data: bytes) -> str:
    return data[:PAYLOAD_LIMIT].decode("utf-8", errors="replace")


# ---------------------------------------------------------------- dialects


def _parse_contract(raw: pl.DataFrame, stem: str, source_file: str, data: bytes) -> ParsedFile:
    if stem not in CSV_FILES:
        return _file_quarantined(source_file, f"unknown CSV entity '{stem}'", _data_head(data))
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


def _parse_synthea(raw: pl.DataFrame, stem: str, source_file: str, data: bytes) -> ParsedFile:
    if stem in SYNTHEA_UNUSED:
        return ParsedFile(feed=FEED, source_file=source_file, ignored={stem: raw.height})
    if stem not in SYNTHEA_REQUIRED:
        return _file_quarantined(source_file, f"unknown CSV entity '{stem}'", _data_head(data))
    names = [c.strip() for c in raw.columns]
    missing = [c for c in SYNTHEA_REQUIRED[stem] if c not in names]
    if missing:
        error = f"missing required column(s): {', '.join(missing)}"
        return _file_quarantined(source_file, error, _data_head(data))
    wanted = SYNTHEA_REQUIRED[stem] + SYNTHEA_OPTIONAL[stem]
    cells = _cells(raw, names, wanted)
    return _apply(SYNTHEA_MAPPINGS[stem](), raw, cells, source_file)


def _cells(raw: pl.DataFrame, names: list[str], wanted: Iterable[str]) -> pl.DataFrame:
    """Trimmed cells under normalized names (empty -> null); absent optional columns -> null.

    Also carries the row number and the hash source: the raw cells ordered by header name
    and joined with U+001F, so a re-delivery with reordered columns hashes the same.
    """
    renamed = raw.rename(dict(zip(raw.columns, names, strict=True)))
    absent = [pl.lit(None, dtype=pl.String).alias(c) for c in wanted if c not in names]
    hash_source = pl.concat_str([pl.col(c).fill_null("") for c in sorted(names)], separator="\x1f")
    stripped = renamed.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(POS),
        hash_source.alias(HASH_SOURCE),
        *[pl.col(c).str.strip_chars() for c in names],
        *absent,
    )
    return stripped.with_columns(
        pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c)) for c in names
    )


def _apply(
    mapping: Mapping, raw: pl.DataFrame, cells: pl.DataFrame, source_file: str
) -> ParsedFile:
    """Evaluate a mapping, split good rows from bad, hash the good, quarantine the bad."""
    errors = (
        pl.concat_str(mapping.checks, separator="; ", ignore_nulls=True)
        if mapping.checks
        else pl.lit("")
    )
    mapped = (
        cells.lazy()
        .with_columns(mapping.parse_stage())
        .select(
            pl.col(POS),
            pl.col(HASH_SOURCE),
            *[expr.alias(name) for name, expr in mapping.columns.items()],
            pl.when(errors.str.len_bytes() > 0).then(errors).alias(ERROR),
        )
        .collect()
    )
    bad = mapped.filter(pl.col(ERROR).is_not_null()).select(POS, ERROR)
    good = mapped.filter(pl.col(ERROR).is_null())
    hashes = [hashlib.sha256(s.encode("utf-8")).hexdigest() for s in good[HASH_SOURCE].to_list()]
    table = good.with_columns(
        pl.lit(source_file).alias("source_file"),
        pl.col(POS).alias("source_position"),
        pl.Series("record_hash", hashes, dtype=pl.String),
    )
    return ParsedFile(
        feed=FEED,
        source_file=source_file,
        tables={mapping.entity: schema.conform(mapping.entity, table)},
        quarantined=_quarantine_rows(raw, bad, source_file),
        records_in=cells.height,
    )


def _quarantine_rows(raw: pl.DataFrame, bad: pl.DataFrame, source_file: str) -> pl.DataFrame:
    """Record-scope rows: the raw cells (as read) joined with commas are the payload."""
    if bad.is_empty():
        return pl.DataFrame(schema=schema.QUARANTINE_COLUMNS)
    rows = raw.with_row_index(POS, offset=1).with_columns(pl.col(POS).cast(pl.Int64))
    payload = pl.concat_str([pl.col(c).fill_null("") for c in raw.columns], separator=",")
    return (
        bad.join(rows, on=POS, how="left")
        .select(
            pl.lit(FEED).alias("feed"),
            pl.lit("record").alias("scope"),
            pl.lit(source_file).alias("source_file"),
            pl.col(POS).alias("source_position"),
            pl.col(ERROR).alias("error"),
            payload.alias("raw_payload"),
        )
        .sort("source_position")
        .cast(schema.QUARANTINE_COLUMNS)  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- cell expressions


def _parse_timestamp(column: str) -> pl.Expr:
    """ISO 8601 with offset / Z / naive (= UTC) / date-only (= midnight UTC) -> naive UTC.

    A few strict strptime formats coalesced: no regex rewriting (measured 10x slower).
    ``%#z`` takes ``Z``, ``+02``, ``+02:00`` and ``-0500``; a space may stand for the ``T``.
    """
    text = pl.col(column).str.replace(" ", "T", literal=True, n=1)
    aware = [
        text.str.strptime(pl.Datetime("us"), fmt, strict=False).dt.replace_time_zone(None)
        for fmt in ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
    ]
    naive = [
        text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        for fmt in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")
    ]
    date_only = _parse_date(column).cast(pl.Datetime("us"))
    return pl.coalesce(*aware, *naive, date_only)


def _parse_date(column: str) -> pl.Expr:
    return pl.col(column).str.strptime(pl.Date, "%Y-%m-%d", strict=False)


def _timestamp(column: str) -> pl.Expr:
    """The parsed copy of a cell the mapping declared in ``timestamps``."""
    return pl.col(f"{column}{TS}")


def _date(column: str) -> pl.Expr:
    return pl.col(f"{column}{DATE}")


def _numeric(column: str) -> pl.Expr:
    """The number of a cell declared in ``numbers``, without its comparator; null for text."""
    return pl.col(f"{column}{NUM}").struct.field("num").cast(pl.Float64, strict=False)


def _comparator(column: str) -> pl.Expr:
    return pl.col(f"{column}{NUM}").struct.field("cmp")


def _lower(column: str) -> pl.Expr:
    return pl.col(column).str.to_lowercase()


def _code_system(column: str, default: str | None = None) -> pl.Expr:
    """Short system names to URIs; a URI or an unknown name passes through; text -> null."""
    key = _lower(column)
    mapped = key.replace_strict(
        list(CODE_SYSTEMS),
        list(CODE_SYSTEMS.values()),
        default=pl.col(column),
        return_dtype=pl.String,
    )
    return (
        pl.when(pl.col(column).is_null()).then(pl.lit(default, dtype=pl.String)).otherwise(mapped)
    )


def _status(column: str, default: str | None) -> pl.Expr:
    return pl.coalesce(_lower(column), pl.lit(default, dtype=pl.String))


def _const(value: str | None) -> pl.Expr:
    return pl.lit(value, dtype=pl.String)


# ---------------------------------------------------------------- row checks


def _missing(column: str) -> pl.Expr:
    return pl.when(pl.col(column).is_null()).then(pl.lit(f"missing {column}"))


def _bad_timestamp(column: str, required: bool = False) -> pl.Expr:
    """Named by column, never by value: the cell may be a birth date."""
    bad = pl.col(column).is_not_null() & _timestamp(column).is_null()
    check = pl.when(bad).then(pl.lit(f"unparseable timestamp in column '{column}'"))
    return pl.coalesce(_missing(column), check) if required else check


def _bad_date(column: str, required: bool = False) -> pl.Expr:
    bad = pl.col(column).is_not_null() & _date(column).is_null()
    check = pl.when(bad).then(pl.lit(f"unparseable date in column '{column}' (want YYYY-MM-DD)"))
    return pl.coalesce(_missing(column), check) if required else check


def _bad_number(column: str, required: bool = False) -> pl.Expr:
    bad = pl.col(column).is_not_null() & _numeric(column).is_null()
    check = pl.when(bad).then(pl.lit(f"non-numeric value in column '{column}'"))
    return pl.coalesce(_missing(column), check) if required else check


def _unless(condition: pl.Expr, error: str) -> pl.Expr:
    """An error wherever ``condition`` does not hold."""
    return pl.when(~condition.fill_null(False)).then(pl.lit(error))


# ---------------------------------------------------------------- contract mappings


def _subject(mrn: str = "mrn") -> dict[str, pl.Expr]:
    return {"mrn": pl.col(mrn), "patient_ref": pl.col(mrn)}


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
    method = pl.col("method").str.to_uppercase()
    coded = method.is_in(list(DICOM_MODALITIES))
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
            "method_system": pl.when(coded).then(_const(DICOM)),
            "method_text": pl.when(~coded).then(pl.col("method")),
            "body_site_code": pl.col("body_site_code"),
            "body_site_system": pl.when(pl.col("body_site_code").is_not_null()).then(
                _const(SNOMED)
            ),
            "body_site_text": pl.col("body_site_text"),
        },
        [
            _missing("mrn"),
            _missing("measurement_id"),
            _bad_number("size_value", required=True),
            pl.coalesce(
                _missing("size_unit"),
                _unless(unit.is_in(["mm", "cm"]), "size_unit must be mm or cm"),
            ),
            _bad_timestamp("measured_at", required=True),
        ],
        timestamps=("measured_at",),
        numbers=("size_value",),
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
            "status": _lower("status"),
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


CONTRACT_MAPPINGS: dict[str, Callable[[], Mapping]] = {
    "patients": _contract_patients,
    "lab_results": _contract_lab_results,
    "vitals": _contract_vitals,
    "performance_status": _contract_performance_status,
    "tumor_measurements": _contract_tumor_measurements,
    "conditions": _contract_conditions,
    "medications": _contract_medications,
}


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
