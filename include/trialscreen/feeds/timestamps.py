"""Timestamps as sent (docs/decisions.md, "Timestamps as sent" and "Local time").

Every parser keeps a timestamp's wall clock as the sender wrote it (a naive value, never
converted at ingest) and the UTC offset the sender gave, in minutes (null when none):
``<column>`` and ``<column>_offset_min``. Staging places the value in time with the hospital
time zone only where no offset was sent (``dbt_project/macros/timezones.sql``).

A value is kept only when every later step can represent it, whatever the hospital zone:

* the wall clock lies in years 1-9999 (what Python, polars and every engine hold);
* an offset, when sent, is within ±18 h (ISO 8601 / java.time's limit) and whole
  minutes below 60, and the instant it gives (wall - offset) lies in years 1-9999 too;
* without an offset, the wall clock lies at least 18 h inside that range, so it is an
  instant in every zone (``0001-01-01T05:00`` or ``9999-12-31T23:00`` without an offset
  is refused; a date-only ``9999-12-31`` is kept).

Anything else is refused: the parser quarantines that record, naming the field.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

MAX_OFFSET_MIN = 18 * 60
OFFSET_TYPE = pl.Int32()
MIN_WALL = datetime(1, 1, 1)
MAX_WALL = datetime(9999, 12, 31, 23, 59, 59, 999999)
_MARGIN = timedelta(minutes=MAX_OFFSET_MIN)


def offset_column(column: str) -> str:
    return f"{column}_offset_min"


def representable(wall: datetime, offset_min: int | None) -> bool:
    """Whether a wall clock (and its offset, if any) can be kept: see the module doc."""
    if offset_min is None:
        return MIN_WALL + _MARGIN <= wall <= MAX_WALL - _MARGIN
    if abs(offset_min) > MAX_OFFSET_MIN:
        return False
    try:
        wall - timedelta(minutes=offset_min)
    except OverflowError:
        return False
    return True


def representable_expr(wall: pl.Expr, offset_min: pl.Expr) -> pl.Expr:
    """The same rule as ``representable`` on polars columns (null wall -> null)."""
    instant = wall - pl.duration(minutes=offset_min.fill_null(0))
    lo, hi = pl.lit(MIN_WALL), pl.lit(MAX_WALL)
    with_offset = (
        (offset_min.abs() <= MAX_OFFSET_MIN) & wall.is_between(lo, hi) & instant.is_between(lo, hi)
    )
    without = wall.is_between(pl.lit(MIN_WALL + _MARGIN), pl.lit(MAX_WALL - _MARGIN))
    return pl.when(offset_min.is_null()).then(without).otherwise(with_offset)


def offset_from_text(tz: pl.Expr) -> pl.Expr:
    """Minutes east of UTC from ``Z``, ``+hh``, ``+hh:mm`` or ``+hhmm`` (null: none sent).

    Minutes of 60 or more make the value null too: the caller treats that as refused.
    """
    sign = pl.when(tz.str.starts_with("-")).then(-1).otherwise(1)
    digits = tz.str.replace_all(":", "", literal=True).str.slice(1)
    hours = digits.str.slice(0, 2).cast(pl.Int32, strict=False)
    minutes = (
        pl.when(digits.str.len_chars() > 2).then(digits.str.slice(2, 2)).otherwise(pl.lit("0"))
    ).cast(pl.Int32, strict=False)
    value = pl.when(minutes < 60).then(sign * (hours * 60 + minutes))
    return (
        pl.when(tz.is_null())
        .then(pl.lit(None, dtype=OFFSET_TYPE))
        .when(tz.str.to_uppercase() == "Z")
        .then(pl.lit(0, dtype=OFFSET_TYPE))
        .otherwise(value.cast(OFFSET_TYPE))
    )
