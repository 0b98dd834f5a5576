"""Reading one CSV file: bytes (gunzipped), UTF-8, every cell as a string.

A file that cannot be read as CSV raises ``UnreadableFileError`` (PHI-free message) and
becomes one file-scope quarantine row. Bytes that are not UTF-8 are decoded as U+FFFD, as
the HL7 and FHIR readers do: the rows land with the damage visible (docs/decisions.md,
"Per-record containment"), one bad byte never takes the whole file down.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile, bounded

FEED = "csv"
PAYLOAD_LIMIT = 64 * 1024  # bytes of a quarantined file kept as its raw payload

_DUPLICATED = re.compile(r"_duplicated_\d+$")


class UnreadableFileError(Exception):
    """The file cannot be read as UTF-8 CSV; the message is PHI-free."""


# ---------------------------------------------------------------- reading


def _relative_posix(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _read_bytes(path: Path) -> bytes:
    """File bytes, gunzipped for ``.gz``, within the limits (``feeds.bounded``); a truncated
    or corrupt gzip, a gzip bomb, an oversize file, a symlink or a FIFO is unreadable."""
    try:
        return bounded.read_file(path)
    except bounded.BadGzip:
        raise UnreadableFileError("truncated or corrupt gzip stream") from None
    except bounded.RefusedInput as exc:
        raise UnreadableFileError(exc.reason) from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot read file ({type(exc).__name__})") from None


def _read_frame(data: bytes) -> pl.DataFrame:
    """All cells as strings; broken CSV structure makes the file unreadable; bytes that are
    not UTF-8 become U+FFFD (the row lands, the damage visible)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = data.decode("utf-8", errors="replace").encode("utf-8")
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
        with bounded.open_regular(path) as handle:
            return handle.read(PAYLOAD_LIMIT).decode("utf-8", errors="replace")
    except (OSError, bounded.RefusedInput):
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


def unknown_entity(stem: str, known: Iterable[str]) -> str:
    """The quarantine reason for a file whose name names no known entity: the stem's length
    and hash, never the name itself (senders name files after patients; docs/decisions.md
    "Free text from source records")."""
    digest = hashlib.sha256(stem.encode("utf-8")).hexdigest()[:12]
    return (
        f"unknown CSV entity: the file name's stem ({len(stem)} characters, sha256 {digest}) "
        f"is none of {', '.join(sorted(known))}"
    )


def _data_head(data: bytes) -> str:
    return data[:PAYLOAD_LIMIT].decode("utf-8", errors="replace")
