"""CSV rows over the per-record limit (``trialscreen.limits``): cut out before polars reads the
file and quarantined alone, so one huge row neither costs its size again in every column nor
stops the rest of the file.

Rows are found by physical lines and quote parity (a quoted cell may hold line breaks; an
escaped quote ``""`` keeps the parity). The kept rows keep their data row numbers: the
positions of the parsed file are mapped back to the rows as sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from trialscreen import limits, schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.csv.read import FEED, PAYLOAD_LIMIT, UnreadableFileError


@dataclass
class Cut:
    """What was cut: (data row number, size, head) per oversize row, and for each kept row
    (in order) its data row number in the file as sent."""

    rows: list[tuple[int, int, bytes]] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)


def _has_long_line(data: bytes, limit: int) -> bool:
    """Whether some physical line is longer than ``limit`` (steps of ~``limit`` bytes)."""
    pos, end = 0, len(data)
    while end - pos > limit:
        newline = data.rfind(b"\n", pos, pos + limit + 1)
        if newline < 0:
            return True
        pos = newline + 1
    return False


def cut_oversize_rows(data: bytes, limit: int | None = None) -> tuple[bytes, Cut | None]:
    """``data`` without its oversize rows, and what was cut (None when nothing was)."""
    limit = limits.current().max_record_bytes if limit is None else limit
    if len(data) <= limit or not _has_long_line(data, limit):
        return data, None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final line break ends the last row, it does not start one
    rows: list[bytes] = []
    current: list[bytes] = []
    quotes = 0
    for line in lines:
        current.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            rows.append(b"\n".join(current))
            current, quotes = [], 0
    if current:
        rows.append(b"\n".join(current))
    del lines
    if len(rows[0]) > limit:
        raise UnreadableFileError(limits.record_too_large("header row", len(rows[0]), limit))
    cut = Cut()
    kept = [rows[0]]
    for number, row in enumerate(rows[1:], 1):
        if len(row) > limit:
            cut.rows.append((number, len(row), row[:PAYLOAD_LIMIT]))
        else:
            kept.append(row)
            cut.kept.append(number)
    return b"\n".join(kept) + b"\n", cut


def apply_cut(parsed: ParsedFile, cut: Cut | None, limit: int | None = None) -> ParsedFile:
    """Positions mapped back to the rows as sent; one quarantine row per oversize row.

    A file quarantined whole stays one record: its cut rows are part of it."""
    if cut is None or not cut.rows:
        return parsed
    if (parsed.quarantined.get_column("scope") == "file").any():
        return parsed
    limit = limits.current().max_record_bytes if limit is None else limit
    new = list(range(1, len(cut.kept) + 1))

    def remap(frame: pl.DataFrame) -> pl.DataFrame:
        if "source_position" not in frame.columns or not frame.height:
            return frame
        position = pl.col("source_position")
        return frame.with_columns(
            position.replace_strict(new, cut.kept, default=position, return_dtype=pl.Int64)
        )

    parsed.tables = {entity: remap(frame) for entity, frame in parsed.tables.items()}
    codings = getattr(parsed, "codings", None)
    if isinstance(codings, pl.DataFrame):
        setattr(parsed, "codings", remap(codings))  # noqa: B010 (set by the codings change)
    rows = [
        {
            "feed": FEED,
            "scope": "record",
            "source_file": parsed.source_file,
            "source_position": number,
            "error": limits.record_too_large("row", size, limit),
            "raw_payload": head.decode("utf-8", errors="replace"),
        }
        for number, size, head in cut.rows
    ]
    parsed.quarantined = pl.concat(
        [remap(parsed.quarantined), schema.quarantine_frame(rows)], how="vertical"
    ).sort("source_position")
    parsed.records_in += len(cut.rows)
    return parsed
