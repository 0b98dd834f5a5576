"""Parsing a feed's new files for ingest: in this process, or in worker processes while the
ingest process writes (``TRIALSCREEN_INGEST_WORKERS``).

Work is cut into units (a run of small files, one file, or one part of a large NDJSON file,
plain or gzipped) and results come back strictly in drop order, so what lands is the same
whichever way it was parsed. At most ``workers + 1`` units are in flight: memory follows the
unit and the batch, not the drop. A unit whose worker fails (killed, out of memory) is parsed
again here.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from trialscreen import limits, schema
from trialscreen.feeds import ParsedFile, bounded
from trialscreen.feeds.contain import contain_values

log = logging.getLogger(__name__)

Parser = Callable[[Path, Path], ParsedFile]
ManyParser = Callable[[Sequence[Path], Path], Iterator[ParsedFile]]

WORKERS_ENV = "TRIALSCREEN_INGEST_WORKERS"
# Worker processes start in about a second each (a fresh interpreter importing polars): a
# feed with fewer new bytes than this is parsed in the ingest process.
PARALLEL_MIN_BYTES = 64 << 20
UNIT_BYTES = 4 << 20  # bytes of (estimated decompressed) input per unit of work
UNIT_FILES = 200  # files per unit (bundles are decoded together up to this many)
PART_BYTES = 16 << 20  # an NDJSON file larger than this (decompressed) is parsed in parts
GZIP_EXPANSION = 12  # estimate of a feed gzip's expansion, to size units


def own_peak_rss_mb() -> float:
    """This process's own peak resident set size so far, in MB: ``VmHWM`` on Linux (it starts
    again at exec; ``ru_maxrss`` carries the parent's peak across fork+exec), else
    ``ru_maxrss`` (macOS reports bytes)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1_000_000 if sys.platform == "darwin" else 1024), 1)


def workers_setting(env: dict[str, str] | None = None) -> int:
    """Parse worker processes: ``TRIALSCREEN_INGEST_WORKERS`` (0: parse in the ingest
    process), else one per CPU, at most 4."""
    raw = (os.environ if env is None else env).get(WORKERS_ENV, "").strip()
    if raw:
        if not raw.isdigit():
            raise limits.LimitSettingError(
                f"{WORKERS_ENV}: expected a whole number (length {len(raw)})"
            )
        return int(raw)
    return min(4, os.cpu_count() or 1)


def _parsers() -> dict[str, tuple[Callable[[Path], bool], Parser, ManyParser]]:
    """Per feed: which files it claims, and how to parse one file or many (batched)."""
    from trialscreen.feeds import fhir
    from trialscreen.feeds.csv import is_csv_file, parse_csv_file
    from trialscreen.feeds.hl7v2 import is_hl7_file, parse_hl7_file

    fhir_many: ManyParser = getattr(fhir, "parse_fhir_files", None) or _default_many(
        fhir.parse_fhir_file
    )
    return {
        "fhir": (fhir.is_fhir_file, fhir.parse_fhir_file, fhir_many),
        "hl7": (is_hl7_file, parse_hl7_file, _default_many(parse_hl7_file)),
        "csv": (is_csv_file, parse_csv_file, _default_many(parse_csv_file)),
    }


def _default_many(parse: Parser) -> ManyParser:
    def many(paths: Sequence[Path], root: Path) -> Iterator[ParsedFile]:
        for path in paths:
            yield parse(path, root)

    return many


def _unsupported_file(feed: str, rel: str, path: Path) -> ParsedFile:
    """A file in a feed folder that no parser claims: quarantined as a file, never ignored."""
    parsed = ParsedFile(feed=feed, source_file=rel, records_in=1)
    try:
        with bounded.open_regular(path) as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
    except bounded.RefusedInput:
        head = ""
    parsed.quarantined = schema.quarantine_frame(
        [
            {
                "feed": feed,
                "scope": "file",
                "source_file": rel,
                "source_position": None,
                "error": f"unsupported file type for the {feed} feed ('{path.suffix}')",
                "raw_payload": head,
            }
        ]
    )
    return parsed


def _file_refused(feed: str, rel: str, reason: str) -> ParsedFile:
    """One file-scope quarantine row for a file that is not read at all (empty payload)."""
    parsed = ParsedFile(feed=feed, source_file=rel, records_in=1)
    row: dict[str, object] = {
        "feed": feed,
        "scope": "file",
        "source_file": rel,
        "source_position": None,
        "error": reason,
        "raw_payload": "",
    }
    parsed.quarantined = schema.quarantine_frame([row])
    return parsed


def _contained(
    feed: str, paths: Sequence[Path], root: Path, parse: Parser, many: ManyParser
) -> Iterator[ParsedFile]:
    """``many(paths, root)``, one result per path in order, where a file whose parsing raises
    is quarantined whole (the exception's class is the reason: its text could quote the file)
    and the others go on. After a failure the first file not yet yielded is parsed alone, and
    the batch parser restarts after it: each failure costs at most one batch re-read."""
    done = 0
    while done < len(paths):
        results = many(paths[done:], root)
        try:
            for parsed in results:
                done += 1
                yield parsed
            return
        except Exception:  # noqa: BLE001 - one bad file must never stop the night
            pass
        path = paths[done]
        try:
            parsed = parse(path, root)
        except Exception as exc:  # noqa: BLE001
            yield _parse_failed(feed, path, root, exc)
        else:
            yield parsed
        done += 1


def _parse_failed(feed: str, path: Path, root: Path, exc: Exception) -> ParsedFile:
    rel = path.relative_to(root).as_posix()
    reason = f"file could not be parsed ({type(exc).__name__})"
    log.warning("file quarantined", extra={"feed": feed, "reason": reason})
    return _file_refused(feed, rel, reason)


# --- units of work ------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """Bytes ``[start, end)`` of an NDJSON file, from line ``first_line``; ``last``: the
    file's final part. For a gzipped file (``gzip``) the offsets count decompressed bytes and
    ``data`` carries the part's bytes once the ingest process has decompressed them (a worker
    cannot enter a gzip in the middle)."""

    path: Path
    start: int
    end: int
    first_line: int
    last: bool
    gzip: bool = False
    data: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Refused:
    """A file refused while it was cut into parts (a gzip found broken or past a limit): it
    lands as one file-scope quarantine row, ``reason`` and ``payload`` (its first bytes)."""

    path: Path
    reason: str
    payload: bytes = field(default=b"", repr=False)


Item = Path | Part | Refused
Parsed = tuple[ParsedFile, bool]  # a file's result (or a part's) and whether it completes it


def _parts(path: Path, size: int) -> list[Part] | None:
    """Line-aligned parts of a large uncompressed FHIR NDJSON file, each at most
    ``PART_BYTES`` and at most the file limit (plus the line it ends in); None when it stays
    whole (small, compressed, or no line break to cut at).

    A file over the file limit is cut too: the limit bounds what one parser holds, and a part
    is all a parser holds, so a bulk FHIR export of several GB lands (docs/decisions.md,
    "Large NDJSON files are parsed in parts"). A gzipped file is cut by ``_gzip_parts``.

    Positions are counted as ``bytes.splitlines`` does (``\\n``, ``\\r\\n``, a lone ``\\r``);
    cuts are made just after a ``\\n``."""
    name = path.name.lower()
    max_file_bytes = limits.current().max_file_bytes
    part_bytes = min(PART_BYTES, max_file_bytes)
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


def _gzip_parts(path: Path, size: int) -> list[Part] | Refused | None:
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
    part_bytes = min(PART_BYTES, lim.max_file_bytes)
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


def _weight(path: Path, size: int) -> int:
    return size * GZIP_EXPANSION if path.name.lower().endswith(".gz") else size


def units(feed: str, files: Sequence[tuple[Path, int]]) -> list[list[Item]]:
    """Consecutive files grouped up to ``UNIT_BYTES``/``UNIT_FILES``; a large FHIR NDJSON file
    (plain or gzipped) is cut into parts, one unit each; a gzip refused while it was cut is a
    unit of its own."""
    out: list[list[Item]] = []
    current: list[Item] = []
    weight = 0
    for path, size in files:
        parts: list[Part] | Refused | None = None
        if feed == "fhir":
            gzipped = path.name.lower().endswith(".gz")
            parts = _gzip_parts(path, size) if gzipped else _parts(path, size)
        if parts:
            if current:
                out.append(current)
                current, weight = [], 0
            if isinstance(parts, Refused):
                out.append([parts])
            else:
                out.extend([part] for part in parts)
            continue
        if current and (weight + _weight(path, size) > UNIT_BYTES or len(current) >= UNIT_FILES):
            out.append(current)
            current, weight = [], 0
        current.append(path)
        weight += _weight(path, size)
    if current:
        out.append(current)
    return out


def parse_unit(feed: str, unit: Sequence[Item], root: Path) -> list[Parsed]:
    """Parse one unit (in a worker or here); values no engine can keep are contained."""
    if len(unit) == 1 and isinstance(unit[0], Refused):
        from trialscreen.feeds.fhir import refused_fhir_file

        refused = unit[0]
        return [
            (_ready(refused_fhir_file(refused.path, root, refused.reason, refused.payload)), True)
        ]
    if len(unit) == 1 and isinstance(unit[0], Part):
        from trialscreen.feeds.fhir import parse_fhir_part

        part = unit[0]
        try:
            data = part.data
            if data is None and part.gzip:
                data = _gzip_part_bytes(part)
            parsed = parse_fhir_part(part.path, root, part.start, part.end, part.first_line, data)
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the night
            parsed = _parse_failed(feed, part.path, root, exc)
        return [(_ready(parsed), part.last)]
    _, parse, many = _parsers()[feed]
    paths = [item for item in unit if isinstance(item, Path)]
    return [(_ready(p), True) for p in _contained(feed, paths, root, parse, many)]


def _ready(parsed: ParsedFile) -> ParsedFile:
    """Values no engine can keep contained, tables conformed to the raw contract (done by
    the worker, so the writer only concatenates)."""
    parsed = contain_values(parsed)
    parsed.tables = {
        entity: schema.conform(entity, frame)
        for entity, frame in parsed.tables.items()
        if frame.height
    }
    return parsed


def _parse_unit_in_worker(
    feed: str, unit: Sequence[Item], root: Path
) -> tuple[list[Parsed], float]:
    return parse_unit(feed, unit, root), own_peak_rss_mb()


class ParseStream:
    """Results for a feed's files in order, parsed here or by ``workers`` processes."""

    def __init__(self, feed: str, root: Path, files: Sequence[tuple[Path, int]]) -> None:
        self.feed = feed
        self.root = root
        self.units = units(feed, files)
        total = sum(_weight(path, size) for path, size in files)
        self.workers = workers_setting() if total >= PARALLEL_MIN_BYTES else 0
        self.worker_peak_rss_mb = 0.0

    def __iter__(self) -> Iterator[Parsed]:
        queued = _with_data(self.units)
        try:
            yield from self._parse(queued)
        finally:
            queued.close()  # a gzip being handed out in parts is closed, also on error

    def _parse(self, queued: Iterator[list[Item]]) -> Iterator[Parsed]:
        if self.workers <= 0 or len(self.units) < 2:
            for unit in queued:
                yield from parse_unit(self.feed, unit, self.root)
            return
        context = get_context("spawn")  # no fork of a process holding DuckDB's threads
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
            pending: deque[tuple[list[Item], Future[tuple[list[Parsed], float]] | None]] = deque()

            def submit() -> None:
                unit = next(queued, None)
                if unit is None:
                    return
                try:
                    future = pool.submit(_parse_unit_in_worker, self.feed, unit, self.root)
                except Exception:  # noqa: BLE001 - a broken pool: parse here
                    future = None
                pending.append((unit, future))

            for _ in range(self.workers + 1):
                submit()
            while pending:
                unit, future = pending.popleft()
                submit()  # keep the workers busy while this unit is written
                yield from self._result(unit, future)

    def _result(
        self, unit: list[Item], future: Future[tuple[list[Parsed], float]] | None
    ) -> list[Parsed]:
        if future is not None:
            try:
                results, peak = future.result()
                self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, peak)
                return results
            except Exception as exc:  # noqa: BLE001 - the worker died: parse it here
                log.warning(
                    "parse worker failed, parsing in the ingest process",
                    extra={"feed": self.feed, "error": type(exc).__name__},
                )
        return parse_unit(self.feed, unit, self.root)
