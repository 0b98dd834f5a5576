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


SENT = pl.Struct({"wall": pl.Datetime("us"), "offset": OFFSET_TYPE})
_TZ = r"(Z|z|[+-]\d\d(?::?\d\d)?)$"


def sent_series(text: pl.Series, *, csv: bool) -> pl.Series:
    """ISO 8601 text as sent -> struct {wall, offset}: see ``parse_sent``.

    Evaluated in stages on a frame, each step once: one polars expression tree that named
    the offset suffix in every branch re-ran its regex dozens of times (measured 40x slower).
    The stages are one lazy query: run eagerly, each cost a fixed ~0.5 ms, and a bundle's
    few records paid that for every timestamp column.
    """
    f = pl.DataFrame({"s": text.cast(pl.String).str.strip_chars()}).lazy()
    s = pl.col("s")
    if csv:  # a space may stand for the T
        f = f.with_columns(s.str.replace(" ", "T", literal=True, n=1))
    else:  # FHIR: a year or year-month means its first day
        n = s.str.len_chars()
        f = f.with_columns(
            pl.when(n == 4).then(s + "-01-01").when(n == 7).then(s + "-01").otherwise(s)
        )
    f = f.with_columns(
        pl.when(s.str.contains("T", literal=True)).then(s.str.extract(_TZ, 1)).alias("tz")
    )
    tz = pl.col("tz")
    f = f.with_columns(
        pl.when(tz.is_not_null())
        .then(s.str.slice(0, s.str.len_chars() - tz.str.len_chars()))
        .otherwise(s)
        .alias("wall_text"),
        offset_from_text(tz).alias("offset"),
    )
    formats = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M") if csv else ("%Y-%m-%dT%H:%M:%S%.f",)
    wall_text = pl.col("wall_text")
    f = f.with_columns(
        pl.coalesce(
            *[wall_text.str.strptime(pl.Datetime("us"), fmt, strict=False) for fmt in formats],
            pl.when(tz.is_null()).then(
                wall_text.str.strptime(pl.Date, "%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
            ),
        ).alias("wall")
    )
    wall, offset = pl.col("wall"), pl.col("offset")
    f = f.with_columns(
        (representable_expr(wall, offset) & (tz.is_null() | offset.is_not_null())).alias("ok")
    )
    ok = pl.col("ok")
    return (
        f.select(
            pl.struct(
                pl.when(ok).then(wall).alias("wall"), pl.when(ok).then(offset).alias("offset")
            )
        )
        .collect()
        .to_series()
    )


def parse_sent(text: pl.Expr, *, csv: bool) -> pl.Expr:
    """ISO 8601 / FHIR date-time text as sent -> struct {wall, offset} (vectorized, per batch).

    The wall clock is kept naive and the offset (``Z``, ``±hh``, ``±hh:mm``, ``±hhmm``) in
    minutes; a naive value or a date-only one has no offset (the hospital's zone applies in
    staging; a date is a local date). ``csv``: a space may stand for the ``T`` and seconds
    may be missing; otherwise (FHIR) a year or year-month means its first day. A value that
    cannot be represented (see the module doc) or parsed has a null wall.
    """
    return text.map_batches(
        lambda series: sent_series(series, csv=csv), return_dtype=SENT, is_elementwise=True
    )
