"""What both dialects share: ``Mapping`` (column expressions plus row checks), the cell
parsing and check expressions it is built from, and applying one to a file's cells (good rows
hashed into the raw table, bad rows quarantined with every error, named by column).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from trialscreen import schema
from trialscreen.codesystems import ATC, ICD10CM, ICDO3, LOINC, RXNORM, SNOMED
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.csv.read import FEED
from trialscreen.feeds.timestamps import offset_column, parse_sent

POS = "__pos"  # 1-based data row number
ERROR = "__error"  # "; "-joined row errors, null when the row is good
HASH_SOURCE = "__hash_source"
TS, DATE, NUM = "@ts", "@date", "@num"  # suffixes of the parsed copies of a cell

# Short code-system names (either dialect, compared lowercased) -> URI. "text" means no system.
CODE_SYSTEMS: dict[str, str | None] = {
    "icd-10-cm": ICD10CM,
    "icd10cm": ICD10CM,
    "icd-o-3": ICDO3,
    "snomed": SNOMED,
    "snomed-ct": SNOMED,
    "snomed ct": SNOMED,
    "sct": SNOMED,
    "loinc": LOINC,
    "rxnorm": RXNORM,
    "atc": ATC,
    "text": None,
}
_NUMBER = r"^(?P<cmp><=|>=|<|>)?\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)$"


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
            *_offset_columns(mapping.entity, mapping.columns),
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
        codings=schema.split_codings(mapping.entity, table),
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
    """ISO 8601 as sent -> struct {wall, offset} (docs/decisions.md, "Timestamps as sent";
    ``trialscreen.feeds.timestamps.parse_sent``): ``Z``, ``+02``, ``+02:00``, ``-0500`` or
    none (naive and date-only values: the hospital's zone applies in staging)."""
    return parse_sent(pl.col(column), csv=True)


def _parse_date(column: str) -> pl.Expr:
    return pl.col(column).str.strptime(pl.Date, "%Y-%m-%d", strict=False)


def _timestamp(column: str) -> pl.Expr:
    """The wall clock (as sent) of a cell the mapping declared in ``timestamps``."""
    return pl.col(f"{column}{TS}").struct.field("wall")


def _offset_columns(entity: str, columns: dict[str, pl.Expr]) -> list[pl.Expr]:
    """``<column>_offset_min`` for every raw timestamp column mapped from one ``_timestamp``
    cell: the offset that cell was sent with (the mappings name the wall clock only)."""
    out = []
    for name in schema.timestamp_columns(entity):
        if name not in columns:
            continue
        roots = [r for r in columns[name].meta.root_names() if r.endswith(TS)]
        if len(roots) == 1:
            offset = pl.col(roots[0]).struct.field("offset")
            out.append(offset.alias(offset_column(name)))
    return out


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


def _subject(mrn: str = "mrn") -> dict[str, pl.Expr]:
    return {"mrn": pl.col(mrn), "patient_ref": pl.col(mrn)}


# ---------------------------------------------------------------- row checks


def _missing(column: str) -> pl.Expr:
    return pl.when(pl.col(column).is_null()).then(pl.lit(f"missing {column}"))


def _bad_timestamp(column: str, required: bool = False) -> pl.Expr:
    """Named by column, never by value: the cell may be a birth date."""
    bad = pl.col(column).is_not_null() & _timestamp(column).is_null()
    check = pl.when(bad).then(
        pl.lit(f"unparseable or unrepresentable timestamp in column '{column}'")
    )
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
