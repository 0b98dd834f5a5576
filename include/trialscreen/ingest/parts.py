"""Cutting a large feed file into parts, each parsed alone (``ingest.parse``): a FHIR NDJSON
file at line breaks, a CSV file at row ends (its header row kept for every part), plain or
gzipped (docs/decisions.md, "Large NDJSON and CSV files are parsed in parts").

A gzip cannot be entered in the middle: its parts' bytes are decompressed in the ingest process
as they are handed out (``_with_data``).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from trialscreen import limits
from trialscreen.feeds import bounded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """Bytes ``[start, end)`` of an NDJSON file, from line ``first_line`` (of a CSV file:
    from data row ``first_line``, parsed under its ``header`` row); ``last``: the file's
    final part. For a gzipped file (``gzip``) the offsets count decompressed bytes and
    ``data`` carries the part's bytes once the ingest process has decompressed them (a worker
    cannot enter a gzip in the middle)."""

    path: Path
    start: int
    end: int
    first_line: int
    last: bool
    gzip: bool = False
    data: bytes | None = field(default=None, repr=False, compare=False)
    header: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Refused:
    """A file refused while it was cut into parts (a gzip found broken or past a limit): it
    lands as one file-scope quarantine row, ``reason`` and ``payload`` (its first bytes)."""

    path: Path
    reason: str
    payload: bytes = field(default=b"", repr=False)


Item = Path | Part | Refused


def _parts(path: Path, size: int, part_bytes: int) -> list[Part] | None:
    """Line-aligned parts of a large uncompressed FHIR NDJSON file, each at most
    ``part_bytes`` (``ingest.parse.PART_BYTES``, at most the file limit) plus the line it ends
    in; None when it stays
    whole (small, compressed, or no line break to cut at).

    A file over the file limit is cut too: the limit bounds what one parser holds, and a part
    is all a parser holds, so a bulk FHIR export of several GB lands (docs/decisions.md,
    "Large NDJSON and CSV files are parsed in parts"). A gzipped file is cut by
    ``_gzip_parts``.

    Positions are counted as ``bytes.splitlines`` does (``\\n``, ``\\r\\n``, a lone ``\\r``);
    cuts are made just after a ``\\n``."""
    name = path.name.lower()
    max_file_bytes = limits.current().max_file_bytes
    if not name.endswith(".ndjson") or size <= part_bytes:
        return None
    cuts = [0]
    lines_before = [1]
    try:
        with bounded.open_regular(path) as handle:
            while True:
                block = handle.read(part_bytes)
                if not block:
                    break
                tail = handle.readline(max_file_bytes) if not block.endswith(b"\n") else b""
                if len(tail) == max_file_bytes and not tail.endswith((b"\n", b"\r")):
                    return None  # a line longer than the file limit: whole, so refused
                block += tail
                crlf = block.count(b"\r\n")
                lines = block.count(b"\n") + block.count(b"\r") - crlf
                if not block.endswith((b"\n", b"\r")):
                    break  # the file's last line has no line break: this is the last part
                cuts.append(cuts[-1] + len(block))
                lines_before.append(lines_before[-1] + lines)
    except (bounded.RefusedInput, OSError):
        return None
    if cuts[-1] >= size:
        cuts.pop()
        lines_before.pop()
    if len(cuts) < 2:
        return None
    ends = [*cuts[1:], size]
    return [
        Part(path, start, end, first, i == len(cuts) - 1)
        for i, (start, end, first) in enumerate(zip(cuts, ends, lines_before, strict=True))
    ]


class _LineTooLong(Exception):
    """A line longer than the file limit: the file stays whole (so refused unread)."""


class _Cuts:
    """Where ``_parts`` would cut a stream fed piece by piece: just after the first ``\\n``
    once a part holds ``part_bytes``; lines counted as ``bytes.splitlines`` counts them (a
    ``\\r\\n`` split between two pieces is one line break)."""

    def __init__(self, part_bytes: int, max_line: int) -> None:
        self.part_bytes = part_bytes
        self.max_line = max_line
        self.starts = [0]
        self.first_lines = [1]
        self.pos = 0  # bytes fed so far
        self.lines = 0  # line breaks in the current part so far
        self.cr = False  # the last byte fed is a \r

    def feed(self, piece: bytes) -> None:
        base = self.pos  # the offset of piece[0]
        done = 0
        while done < len(piece):
            start = self.starts[-1]
            at = max(start + self.part_bytes - 1 - base, done)
            cut = piece.find(b"\n", at) if at < len(piece) else -1
            end = len(piece) if cut < 0 else cut + 1
            self._count(piece, done, end)
            done = end
            if self.pos - start > self.part_bytes + self.max_line:
                raise _LineTooLong
            if cut < 0:
                return
            self.starts.append(self.pos)
            self.first_lines.append(self.first_lines[-1] + self.lines)
            self.lines = 0

    def _count(self, data: bytes, i: int, j: int) -> None:
        """Line breaks in ``data[i:j]``, the next bytes of the stream."""
        self.lines += data.count(b"\n", i, j) + data.count(b"\r", i, j) - data.count(b"\r\n", i, j)
        if self.cr and data.startswith(b"\n", i, j):
            self.lines -= 1
        self.cr = data.endswith(b"\r", i, j)
        self.pos += j - i

    def parts(self, path: Path) -> list[Part]:
        starts, firsts = list(self.starts), list(self.first_lines)
        if starts[-1] >= self.pos:  # the stream ends at a cut (or is empty)
            starts.pop()
            firsts.pop()
        if not starts:
            return []
        ends = [*starts[1:], self.pos]
        return [
            Part(path, start, end, first, i == len(starts) - 1, gzip=True)
            for i, (start, end, first) in enumerate(zip(starts, ends, firsts, strict=True))
        ]


def _gzip_parts(path: Path, size: int, part_bytes: int) -> list[Part] | Refused | None:
    """Line-aligned parts of a gzipped FHIR NDJSON file that decompresses past the part size,
    cut as ``_parts`` cuts an uncompressed one (offsets and line numbers of the decompressed
    stream), so what one parser holds is bounded by the part, never by the file.

    The gzip is decompressed here once, streaming, to find the cuts, and again part by part
    as the parts are handed out (``_with_data``); nothing is written to disk. This first pass
    checks the whole stream before any part is parsed: a gzip that is broken (not gzip,
    truncated, a bad checksum), expands more than the ratio allows or past
    ``TRIALSCREEN_MAX_EXPANDED_BYTES`` is ``Refused`` whole, nothing of it landed. None when
    it stays whole: it cannot expand past one part without failing the ratio (decided from
    its size, without reading it), it fits in one part, or a line is longer than the file
    limit (then the file limit refuses it, as an uncompressed file)."""
    lim = limits.current()
    if not path.name.lower().endswith(".ndjson.gz"):
        return None
    if max(lim.ratio_floor_bytes, lim.max_expansion_ratio * size) <= part_bytes:
        return None
    cuts = _Cuts(part_bytes, lim.max_file_bytes)
    pieces = bounded.gunzip_stream(path, lim)
    try:
        for piece in pieces:
            cuts.feed(piece)
    except bounded.RefusedInput as exc:
        from trialscreen.feeds.fhir.read import refusal_payload

        log.warning("file quarantined", extra={"feed": "fhir", "reason": exc.reason})
        return Refused(path, exc.reason, refusal_payload(path, exc))
    except (_LineTooLong, OSError):
        return None
    finally:
        pieces.close()
    parts = cuts.parts(path)
    return parts if len(parts) > 1 else None


class _Unpacked:
    """A gzip's decompressed bytes, handed out part by part, front to back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pieces = bounded.gunzip_stream(path)
        self.pos = 0  # the offset of ``self.rest``
        self.rest = b""

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; ``start`` at or after the end of the last read."""
        chunks, have = [self.rest], len(self.rest)
        while self.pos + have < end:
            piece = next(self.pieces, None)
            if piece is None:
                raise bounded.RefusedInput("gzip changed while it was read (shorter)")
            chunks.append(piece)
            have += len(piece)
        data = b"".join(chunks)
        chunks.clear()
        out, self.rest = data[start - self.pos : end - self.pos], data[end - self.pos :]
        self.pos = end
        return out

    def close(self) -> None:
        self.pieces.close()


def _gzip_part_bytes(part: Part) -> bytes:
    """A gzip part's bytes, decompressed from the file's start (for a caller that did not
    read it in order: ``ParseStream`` hands every part out with its bytes)."""
    unpacked = _Unpacked(part.path)
    try:
        return unpacked.read(part.start, part.end)
    finally:
        unpacked.close()


def _with_data(units: Iterable[list[Item]]) -> Generator[list[Item], None, None]:
    """The units in order, a gzipped file's parts with their bytes, decompressed here front to
    back as they are handed out (at most ``workers + 1`` parts are held). A gzip that fails
    now (it changed since it was cut) ends in one file-scope row in place of its remaining
    parts: its earlier parts are already parsed, as with an uncompressed file whose later part
    fails."""
    unpacked: _Unpacked | None = None
    failed: Path | None = None
    try:
        for unit in units:
            part = unit[0]
            if not (len(unit) == 1 and isinstance(part, Part) and part.gzip):
                yield unit
                continue
            if part.path == failed:
                continue
            if unpacked is None or unpacked.path != part.path:
                if unpacked is not None:
                    unpacked.close()
                unpacked = _Unpacked(part.path)
            try:
                data = unpacked.read(part.start, part.end)
            except (bounded.RefusedInput, OSError) as exc:
                from trialscreen.feeds.fhir.read import refusal_payload

                unpacked.close()
                unpacked, failed = None, part.path
                reason = (
                    exc.reason
                    if isinstance(exc, bounded.RefusedInput)
                    else f"file could not be read ({type(exc).__name__})"
                )
                payload = (
                    refusal_payload(part.path, exc)
                    if isinstance(exc, bounded.RefusedInput)
                    else b""
                )
                yield [Refused(part.path, reason, payload)]
                continue
            if part.last:
                unpacked.close()
                unpacked = None
            yield [replace(part, data=data)]
    finally:
        if unpacked is not None:
            unpacked.close()


# --- CSV ----------------------------------------------------------------------------------

_PIECE = 1 << 20  # bytes of a plain file read at a time by the cut pass
HeaderCheck = Callable[[Path, bytes], tuple[bool, int | None]]


class _StaysWhole(Exception):
    """The file is not cut: its header gets a whole-file verdict, or a row (or a run of rows
    a cut must not split) is longer than the file limit."""


class _RowCuts:
    """Where a CSV stream fed piece by piece is cut: at the end of a row (a ``\\n`` outside
    quotes: the quote parity ``feeds.csv.oversize`` splits rows by, so a quoted cell's line
    break never ends a part) once a part holds ``part_bytes``. With a run column (Synthea's
    ``PATIENT``), the cut waits for the first row whose value differs from the row before.
    Rows are counted as polars counts them (every row end; a blank line is a row), so
    ``first_rows`` are the data row numbers of the whole-file parse."""

    def __init__(self, path: Path, part_bytes: int, max_run: int, check: HeaderCheck) -> None:
        self.path = path
        self.part_bytes = part_bytes
        self.max_run = max_run
        self.check = check
        self.key: int | None = None  # the run column's index
        self.header: bytes | None = None
        self.starts = [0]
        self.first_rows = [1]
        self.pos = 0  # bytes fed so far
        self.quoted = False  # inside a quoted cell (odd quotes so far)
        self.rows = 0  # row ends so far, the header's included
        self.row = bytearray()  # the current row so far, while rows are read one by one
        self.row_bytes = 0  # its size (its bytes are kept only where a row is looked at)
        self.max_header = limits.current().max_record_bytes
        self.seeking = False  # the part is full: looking for the row end to cut at
        self.partial = False  # the current row began before the seeking did
        self.last: str | None = None  # the run column of the row before, while seeking

    def feed(self, piece: bytes) -> None:
        base, i = self.pos, 0
        while i < len(piece):
            if self.header is not None and not self.seeking:
                full = self.starts[-1] + self.part_bytes - base  # where the part is full
                j = min(len(piece), max(full, i))
                self._count(piece, i, j)
                self.pos, i = base + j, j
                self.seeking = j >= full
                self.partial = True
                continue
            newline = piece.find(b"\n", i)
            j = len(piece) if newline < 0 else newline + 1
            if self.header is None or self.key is not None:  # its bytes are needed
                self.row += piece[i:j]
            self.row_bytes += j - i
            self.quoted ^= piece.count(b'"', i, j) % 2 == 1
            self.pos, i = base + j, j
            if self.header is None and self.row_bytes > self.max_header:
                raise _StaysWhole  # the whole-file parse refuses the header row
            if self.pos - self.starts[-1] > self.part_bytes + self.max_run:
                raise _StaysWhole
            if newline >= 0 and not self.quoted:
                self.rows += 1
                self._row_end(bytes(self.row), self.row_bytes)
                self.row.clear()
                self.row_bytes = 0

    def _count(self, piece: bytes, i: int, j: int) -> None:
        """Row ends in ``piece[i:j]``: counted whole where it holds no quote."""
        if piece.find(b'"', i, j) < 0:
            if not self.quoted:
                self.rows += piece.count(b"\n", i, j)
            return
        while i < j:
            newline = piece.find(b"\n", i, j)
            end = j if newline < 0 else newline + 1
            self.quoted ^= piece.count(b'"', i, end) % 2 == 1
            if newline >= 0 and not self.quoted:
                self.rows += 1
            i = end

    def _row_end(self, row: bytes, size: int) -> None:
        if self.header is None:
            accepted, self.key = self.check(self.path, row)
            if not accepted:
                raise _StaysWhole
            self.header = row
            return
        partial, self.partial = self.partial, False
        if self.key is None:
            self._cut(self.pos, self.rows)
            return
        value = None if partial else _cell(row, self.key)
        if self.last is not None and value is not None and value != self.last:
            self._cut(self.pos - size, self.rows - 1)  # before this row
        else:
            self.last = value

    def _cut(self, at: int, rows_before: int) -> None:
        self.starts.append(at)
        self.first_rows.append(rows_before)  # row ends before it: the header and data rows
        self.seeking, self.last = False, None

    def parts(self, gzip: bool) -> list[Part]:
        starts, firsts = list(self.starts), list(self.first_rows)
        if starts[-1] >= self.pos:  # the stream ends at a cut
            starts.pop()
            firsts.pop()
        if self.header is None or len(starts) < 2:
            return []
        ends = [*starts[1:], self.pos]
        return [
            Part(self.path, start, end, first, i == len(starts) - 1, gzip, header=self.header)
            for i, (start, end, first) in enumerate(zip(starts, ends, firsts, strict=True))
        ]


def _cell(row: bytes, index: int) -> str | None:
    """Cell ``index`` of one CSV row as the csv module reads it; None when it has none."""
    text = row.decode("utf-8", errors="replace").lstrip("\ufeff")
    cells = next(csv.reader(io.StringIO(text)), [])
    return cells[index].strip() if index < len(cells) else None


def _pieces(path: Path) -> Generator[bytes, None, None]:
    with bounded.open_regular(path) as handle:
        while piece := handle.read(_PIECE):
            yield piece


def _csv_parts(
    path: Path, size: int, part_bytes: int, check: HeaderCheck
) -> list[Part] | Refused | None:
    """Row-aligned parts of a CSV file over the part size, plain or gzipped (decompressed
    streaming, as ``_gzip_parts`` does, and refused whole by the same checks), each parsed
    under the file's header row (``feeds.csv.parts.parse_csv_part``). None when it stays whole:
    small, one part, a header the whole-file parse refuses (``check``), a row longer than the
    file limit (then it gets today's verdicts, the file limit's among them)."""
    lim = limits.current()
    gzipped = path.name.lower().endswith(".csv.gz")
    if gzipped:
        if max(lim.ratio_floor_bytes, lim.max_expansion_ratio * size) <= part_bytes:
            return None
    elif not path.name.lower().endswith(".csv") or size <= part_bytes:
        return None
    cuts = _RowCuts(path, part_bytes, lim.max_file_bytes, check)
    pieces = bounded.gunzip_stream(path, lim) if gzipped else _pieces(path)
    try:
        for piece in pieces:
            cuts.feed(piece)
    except bounded.RefusedInput as exc:
        if not gzipped:
            return None  # (a symbolic link, a FIFO...): the whole-file path refuses it
        # the reasons of the whole-file parse (``feeds.csv.read._read_bytes``)
        bad = isinstance(exc, bounded.BadGzip)
        reason = "truncated or corrupt gzip stream" if bad else exc.reason
        log.warning("file quarantined", extra={"feed": "csv", "reason": reason})
        return Refused(path, reason)
    except (_StaysWhole, OSError):
        return None
    finally:
        pieces.close()
    parts = cuts.parts(gzipped)
    return parts if len(parts) > 1 else None
