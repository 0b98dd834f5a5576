"""One part of a large CSV file, parsed as the whole file would parse those rows.

``ingest.parts`` cuts a CSV file over the part size at row ends (a line break outside quotes,
the quote parity ``oversize`` splits rows by) and keeps its header row; each part is parsed
here under that header, and its positions continue the file's data row numbers, so every row,
quarantine row and ledger entry is that of the whole-file parse (docs/decisions.md, "CSV
files are parsed in parts too").
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from trialscreen.feeds import ParsedFile, bounded
from trialscreen.feeds.csv import entity_stem, parse_csv_bytes
from trialscreen.feeds.csv.read import (
    PAYLOAD_LIMIT,
    UnreadableFileError,
    _file_quarantined,
    _payload_head,
    _read_frame,
    _relative_posix,
)
from trialscreen.feeds.csv.synthea import is_synthea_header

# The column a cut must not fall inside a run of: Synthea rows have no id, and the dialect
# numbers a repeated PATIENT|ENCOUNTER|CODE|time key in file order (``synthea._synthea_id``).
SYNTHEA_RUN_COLUMN = "PATIENT"


def part_header(path: Path, header: bytes) -> tuple[bool, int | None]:
    """Whether a file whose header row is ``header`` may be parsed in parts: the header alone
    gets no file-scope verdict (an unknown entity or dialect, a missing or duplicated column
    keep the file whole, so it gets today's verdict). And the index of the column whose runs
    a cut must not split (Synthea's ``PATIENT``), None for the contract dialect."""
    try:
        parsed = parse_csv_bytes(header, entity_stem(path), "")
        columns = [c.strip() for c in _read_frame(header).columns]
    except UnreadableFileError:
        return False, None
    if (parsed.quarantined.get_column("scope") == "file").any():
        return False, None
    if is_synthea_header(columns) and SYNTHEA_RUN_COLUMN in columns:
        return True, columns.index(SYNTHEA_RUN_COLUMN)
    return True, None


def parse_csv_part(
    path: Path,
    root: Path,
    start: int,
    end: int,
    first_row: int,
    header: bytes,
    data: bytes | None = None,
) -> ParsedFile:
    """Bytes ``[start, end)`` of a CSV file (row ends; ``first_row``: the data row number of
    the first), parsed under the file's ``header`` row (part of the bytes when ``start`` is
    0) with positions counted from ``first_row``. ``data``: those bytes when the caller read
    them (a gzip's part); else they are read from ``path``. Everything names ``path``."""
    path = Path(path)
    source_file = _relative_posix(path, root)
    try:
        if data is None:
            data = _read_slice(path, start, end)
        if start > 0:
            data = header + data
        parsed = parse_csv_bytes(data, entity_stem(path), source_file)
    except UnreadableFileError as exc:
        # the whole-file parse would refuse the whole file; the parts before this one are
        # parsed already (docs/decisions.md, "CSV files are parsed in parts too")
        reason = (
            f"{exc} (in the part of the file from data row {first_row} on; the file's other"
            " parts were read)"
        )
        payload = _payload_head(path) if data is None else data[:PAYLOAD_LIMIT]
        return _file_quarantined(source_file, reason, _text(payload))
    return _shifted(parsed, first_row - 1)


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", errors="replace")


def refused_csv_file(path: Path, root: Path, reason: str) -> ParsedFile:
    """The result ``parse_csv_file`` gives a file it refuses: one file-scope row with
    ``reason`` and the file's first 64 KiB as its payload."""
    path = Path(path)
    return _file_quarantined(_relative_posix(path, root), reason, _payload_head(path))


def _read_slice(path: Path, start: int, end: int) -> bytes:
    try:
        with bounded.open_regular(path) as handle:
            handle.seek(start)
            data = handle.read(end - start)
    except bounded.RefusedInput as exc:
        raise UnreadableFileError(exc.reason) from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot read file ({type(exc).__name__})") from None
    if len(data) != end - start:
        raise UnreadableFileError("file changed while it was read (shorter)")
    return data


def _shifted(parsed: ParsedFile, offset: int) -> ParsedFile:
    """Positions moved ``offset`` rows on (a later part's rows are numbered from 1)."""
    if not offset:
        return parsed

    def shift(frame: pl.DataFrame) -> pl.DataFrame:
        if "source_position" not in frame.columns or not frame.height:
            return frame
        return frame.with_columns(pl.col("source_position") + offset)

    parsed.tables = {entity: shift(frame) for entity, frame in parsed.tables.items()}
    parsed.codings = shift(parsed.codings)
    parsed.quarantined = shift(parsed.quarantined)  # a file-scope row's position stays null
    return parsed
