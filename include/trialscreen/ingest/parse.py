"""Parsing a feed's new files for ingest: in this process, or in worker processes while the
ingest process writes (``TRIALSCREEN_INGEST_WORKERS``).

Work is cut into units (a run of small files, one file, or one part of a large NDJSON file)
and results come back strictly in drop order, so what lands is the same whichever way it was
parsed. At most ``workers + 1`` units are in flight: memory follows the unit and the batch,
not the drop. A unit whose worker fails (killed, out of memory) is parsed again here.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
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
PART_BYTES = 16 << 20  # an uncompressed NDJSON file larger than this is parsed in parts
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
    """Bytes ``[start, end)`` of an uncompressed NDJSON file, from line ``first_line``;
    ``last``: the file's final part."""

    path: Path
    start: int
    end: int
    first_line: int
    last: bool


Item = Path | Part
Parsed = tuple[ParsedFile, bool]  # a file's result (or a part's) and whether it completes it


def _parts(path: Path, size: int) -> list[Part] | None:
    """Line-aligned parts of a large uncompressed FHIR NDJSON file, each at most
    ``PART_BYTES`` and at most the file limit (plus the line it ends in); None when it stays
    whole (small, compressed, or no line break to cut at).

    A file over the file limit is cut too: the limit bounds what one parser holds, and a part
    is all a parser holds, so a bulk FHIR export of several GB lands (docs/decisions.md,
    "Large NDJSON files are parsed in parts"). A gzipped file cannot be entered in the middle:
    it is decompressed whole, and the limit refuses it.

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


def _weight(path: Path, size: int) -> int:
    return size * GZIP_EXPANSION if path.name.lower().endswith(".gz") else size


def units(feed: str, files: Sequence[tuple[Path, int]]) -> list[list[Item]]:
    """Consecutive files grouped up to ``UNIT_BYTES``/``UNIT_FILES``; a large FHIR NDJSON file
    is cut into parts, one unit each."""
    out: list[list[Item]] = []
    current: list[Item] = []
    weight = 0
    for path, size in files:
        parts = _parts(path, size) if feed == "fhir" else None
        if parts:
            if current:
                out.append(current)
                current, weight = [], 0
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
    if len(unit) == 1 and isinstance(unit[0], Part):
        from trialscreen.feeds.fhir import parse_fhir_part

        part = unit[0]
        try:
            parsed = parse_fhir_part(part.path, root, part.start, part.end, part.first_line)
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
        if self.workers <= 0 or len(self.units) < 2:
            for unit in self.units:
                yield from parse_unit(self.feed, unit, self.root)
            return
        context = get_context("spawn")  # no fork of a process holding DuckDB's threads
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
            pending: deque[tuple[list[Item], Future[tuple[list[Parsed], float]] | None]] = deque()
            queued = iter(self.units)

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
