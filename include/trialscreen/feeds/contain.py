"""Per-record containment of values no warehouse can hold (docs/decisions.md, "Per-record
containment"), applied to every parsed file before it is written, whatever the feed.

* a NUL byte (U+0000) in any text field: PostgreSQL text cannot hold it and its COPY would
  abort the whole feed; DuckDB could. The record is quarantined on both engines (same
  result everywhere, and a NUL in a clinical field is a corrupted record, not a value);
* a number that is not finite (NaN, ±inf — e.g. ``1e999`` overflows a double): no
  plausible result, and ``inf`` breaks comparisons and aggregates downstream.

The record goes to quarantine with its file, position and the field named (never the
value); its payload is the landed row as JSON (the parser's own payload is not kept past
parsing). Its coding child rows go with it. ``records_in`` is unchanged, so
``records_in = rows out + quarantined`` still holds.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile

_ERROR = "__contain_error"
_ROW = "__contain_row"


def _checks(frame: pl.DataFrame) -> list[pl.Expr]:
    checks: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            bad = pl.col(name).str.contains("\x00", literal=True)
            checks.append(pl.when(bad).then(pl.lit(f"field {name} contains a NUL byte")))
        elif dtype in (pl.Float64, pl.Float32):
            bad = pl.col(name).is_nan() | pl.col(name).is_infinite()
            checks.append(pl.when(bad).then(pl.lit(f"field {name} is not a finite number")))
    return checks


def _any_bad(frame: pl.DataFrame) -> bool:
    """Whether any value of the frame would be contained: one cheap pass (no reason strings
    built) over every text and float column; nearly every file is clean and stops here."""
    flags: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            flags.append(pl.col(name).str.contains("\x00", literal=True).any())
        elif dtype in (pl.Float64, pl.Float32):
            flags.append((pl.col(name).is_nan() | pl.col(name).is_infinite()).any())
    if not flags:
        return False
    return bool(any(frame.select(flags).row(0)))


def is_clean(frame: pl.DataFrame) -> bool:
    """Whether ``contain_values`` would move no record of this frame (of any entity)."""
    return not frame.height or not _any_bad(frame)


def _payload(row: dict[str, object]) -> str:
    def value(v: object) -> object:
        if isinstance(v, datetime | date):
            return v.isoformat()
        if isinstance(v, float) and not math.isfinite(v):
            return repr(v)
        if isinstance(v, str):
            return v.replace("\x00", "\ufffd")
        return v

    return json.dumps({k: value(v) for k, v in row.items() if not k.startswith("__")})


def contain_values(parsed: ParsedFile) -> ParsedFile:
    """Move the records holding a value no engine can keep from ``tables`` to quarantine."""
    quarantine: list[dict[str, object]] = []
    removed: list[pl.DataFrame] = []
    for entity, frame in parsed.tables.items():
        if frame.height == 0 or not _any_bad(frame):
            continue
        checks = _checks(frame)
        errors = pl.concat_str(checks, separator="; ", ignore_nulls=True)
        flagged = frame.with_columns(pl.when(errors.str.len_bytes() > 0).then(errors).alias(_ERROR))
        bad = flagged.filter(pl.col(_ERROR).is_not_null())
        if bad.height == 0:
            continue
        parsed.tables[entity] = flagged.filter(pl.col(_ERROR).is_null()).drop(_ERROR)
        removed.append(bad.select(pl.lit(entity).alias("entity"), "record_id", "record_hash"))
        for row in bad.iter_rows(named=True):
            quarantine.append(
                {
                    "feed": parsed.feed,
                    "scope": "record",
                    "source_file": parsed.source_file,
                    "source_position": row.get("source_position"),
                    "error": f"{entity} record: {row[_ERROR]}",
                    "raw_payload": _payload(row),
                }
            )
    if not quarantine:
        return parsed
    parsed.quarantined = pl.concat(
        [parsed.quarantined, schema.quarantine_frame(quarantine)], how="vertical_relaxed"
    ).cast(schema.QUARANTINE_COLUMNS)  # type: ignore[arg-type]
    codings = getattr(parsed, "codings", None)
    if isinstance(codings, pl.DataFrame) and codings.height and "entity" in codings.columns:
        gone = pl.concat(removed)
        parsed.codings = codings.join(
            gone, on=["entity", "record_id", "record_hash"], how="anti", nulls_equal=True
        )
    return parsed
