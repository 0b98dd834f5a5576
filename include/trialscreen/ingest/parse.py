"""Parsing a feed's new files for ingest: in this process, or in worker processes while the
ingest process writes (``TRIALSCREEN_INGEST_WORKERS``).

Work is cut into units (a run of small files, one file, or one part of a large NDJSON or
CSV file, plain or gzipped: ``ingest.parts``) and results come back strictly in drop order,
so what lands is the same whichever way it was parsed. Files are cut lazily, a thread ahead
of the parsing, so the first part is parsed while later files are still checked and cut. At
most ``workers + 1`` units are in flight: memory follows the unit and the batch, not the
drop. A unit whose worker fails (killed, out of memory) is parsed again here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import resource
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import polars as pl

from trialscreen import limits, schema
from trialscreen.feeds import ParsedFile, bounded
from trialscreen.feeds.contain import contain_values
from trialscreen.feeds.contain import is_clean as contain_is_clean
from trialscreen.ingest.parts import (
    Item,
    Part,
    Refused,
    _csv_parts,
    _gzip_part_bytes,
    _gzip_parts,
    _parts,
    _with_data,
)
from trialscreen.workers import spawn_pool

log = logging.getLogger(__name__)

Parser = Callable[[Path, Path], ParsedFile]
ManyParser = Callable[[Sequence[Path], Path], Iterator[ParsedFile]]

Parsed = tuple[ParsedFile, bool]  # a file's result (or a part's) and whether it completes it

WORKERS_ENV = "TRIALSCREEN_INGEST_WORKERS"
# Worker processes start in about a second each (a fresh interpreter importing polars): a
# feed with fewer new bytes than this is parsed in the ingest process.
PARALLEL_MIN_BYTES = 64 << 20
UNIT_BYTES = 16 << 20  # bytes of (estimated decompressed) input per unit of work
UNIT_FILES = 1000  # files per unit (bundles are decoded together up to this many)
PART_BYTES = 16 << 20  # an NDJSON or CSV file larger (decompressed) is parsed in parts
GZIP_EXPANSION = 12  # estimate of a feed gzip's expansion, to size units
UNITS_AHEAD = 64  # units cut ahead of the parsing (descriptions only: no bytes)


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
    from trialscreen.feeds.hl7v2 import is_hl7_file, parse_hl7_file, parse_hl7_files

    fhir_many: ManyParser = getattr(fhir, "parse_fhir_files", None) or _default_many(
        fhir.parse_fhir_file
    )
    return {
        "fhir": (fhir.is_fhir_file, fhir.parse_fhir_file, fhir_many),
        "hl7": (is_hl7_file, parse_hl7_file, parse_hl7_files),
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


def _weight(path: Path, size: int) -> int:
    return size * GZIP_EXPANSION if path.name.lower().endswith(".gz") else size


def units(feed: str, files: Sequence[tuple[Path, int]]) -> list[list[Item]]:
    """``iter_units`` as a list (every file checked and cut before it returns)."""
    return list(iter_units(feed, files))


def iter_units(feed: str, files: Sequence[tuple[Path, int]]) -> Iterator[list[Item]]:
    """Consecutive files grouped up to ``UNIT_BYTES``/``UNIT_FILES``; a large FHIR NDJSON or
    CSV file (plain or gzipped) is cut into parts, one unit each; a gzip refused while it was
    cut is a unit of its own. Lazy: a file is checked and cut when the units before it have
    been taken, so parsing starts after the first large file's cut, not after every one."""
    part_bytes = min(PART_BYTES, limits.current().max_file_bytes)
    current: list[Item] = []
    weight = 0
    for path, size in files:
        parts = _cut(feed, path, size, part_bytes)
        if parts:
            if current:
                yield current
                current, weight = [], 0
            if isinstance(parts, Refused):
                yield [parts]
            else:
                for part in parts:
                    yield [part]
            continue
        if current and (weight + _weight(path, size) > UNIT_BYTES or len(current) >= UNIT_FILES):
            yield current
            current, weight = [], 0
        current.append(path)
        weight += _weight(path, size)
    if current:
        yield current


def _cut(feed: str, path: Path, size: int, part_bytes: int) -> list[Part] | Refused | None:
    """The parts of a file to parse in parts (``ingest.parts``), or None: it stays whole."""
    if feed == "fhir":
        gzipped = path.name.lower().endswith(".gz")
        return (_gzip_parts if gzipped else _parts)(path, size, part_bytes)
    if feed == "csv":
        from trialscreen.feeds.csv.parts import part_header

        return _csv_parts(path, size, part_bytes, part_header)
    return None


def _ahead(items: Iterator[list[Item]], depth: int) -> Generator[list[Item], None, None]:
    """``items`` in order, produced by a thread up to ``depth`` ahead: the check-and-cut pass
    of the next large file (its decompression above all) runs while the parts before it are
    parsed and written. Only the units' descriptions wait in the queue, never their bytes
    (``_with_data`` adds those as a unit is handed out); an exception of ``items`` is raised
    here, in order."""
    done = object()
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failed(exc))
            return
        put(done)

    thread = threading.Thread(target=produce, name="ingest-cut", daemon=True)
    thread.start()
    try:
        while (item := waiting.get()) is not done:
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()


@dataclass(frozen=True)
class _Failed:
    exc: BaseException


def parse_unit(feed: str, unit: Sequence[Item], root: Path) -> list[Parsed]:
    """Parse one unit (in a worker or here); values no engine can keep are contained."""
    if len(unit) == 1 and isinstance(unit[0], Refused):
        from trialscreen.feeds.csv.parts import refused_csv_file
        from trialscreen.feeds.fhir import refused_fhir_file

        refused = unit[0]
        if feed == "csv":
            return [(_ready(refused_csv_file(refused.path, root, refused.reason)), True)]
        return [
            (_ready(refused_fhir_file(refused.path, root, refused.reason, refused.payload)), True)
        ]
    if len(unit) == 1 and isinstance(unit[0], Part):
        return [(_ready(_parse_part(feed, unit[0], root)), unit[0].last)]
    _, parse, many = _parsers()[feed]
    paths = [item for item in unit if isinstance(item, Path)]
    parsed = list(_contained(feed, paths, root, parse, many))
    clean = _clean(parsed)
    return [(_ready(p, clean), True) for p in parsed]


def _parse_part(feed: str, part: Part, root: Path) -> ParsedFile:
    from trialscreen.feeds.csv.parts import parse_csv_part
    from trialscreen.feeds.fhir import parse_fhir_part

    try:
        data = part.data
        if data is None and part.gzip:
            data = _gzip_part_bytes(part)
        if feed == "csv":
            return parse_csv_part(
                part.path, root, part.start, part.end, part.first_line, part.header, data
            )
        return parse_fhir_part(part.path, root, part.start, part.end, part.first_line, data)
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the night
        return _parse_failed(feed, part.path, root, exc)


def _ready(parsed: ParsedFile, clean: bool = False) -> ParsedFile:
    """Values no engine can keep contained (unless ``clean``: the unit's rows were checked
    together), tables conformed to the raw contract (done by the worker, so the writer only
    concatenates; ``schema.conform`` keeps a frame already in the contract as it is)."""
    if not clean:
        parsed = contain_values(parsed)
    parsed.tables = {
        entity: schema.conform(entity, frame)
        for entity, frame in parsed.tables.items()
        if frame.height
    }
    return parsed


def _clean(files: Sequence[ParsedFile]) -> bool:
    """Whether no record of these files holds a value to contain, checked once over each
    entity's rows of all of them (a unit of many small files paid a check per file and
    entity). False when their frames differ in shape (``pl.concat`` refuses them; comparing
    each frame's schema in Python cost more than the check): each file is then checked
    alone."""
    if len(files) < 2:
        return False
    for entity in schema.ENTITIES:
        frames = [p.tables[entity] for p in files if entity in p.tables and p.tables[entity].height]
        if not frames:
            continue
        try:
            rows = pl.concat(frames, rechunk=False)
        except (pl.exceptions.SchemaError, pl.exceptions.ShapeError):
            return False
        if not contain_is_clean(rows):
            return False
    return True


def parse_pool(workers: int) -> ProcessPoolExecutor:
    """The ingest's parse workers: spawned, each ending with the ingest process however that
    ends (``trialscreen.workers``), and returning the large buffers it frees."""
    return spawn_pool(workers, return_large_buffers)


# glibc's malloc maps a block of at least this size on its own, and unmaps it when freed
MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def return_large_buffers() -> None:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD_BYTES`` for this process
    (docs/decisions.md, "The ingest returns the memory it frees"). By default glibc raises the
    threshold to the largest mapped block freed so far (up to 32 MiB): once the first parsed
    part (up to 16 MiB of file bytes, and the frames made of it) is freed, later ones come from
    the heap, whose freed space stays with the process. The FHIR ingest of 300,000 patients grew
    glibc's heap from 133 to 296 MB in 16 flushes (80 MB of it in use); with the threshold
    fixed it stayed at 29-30 MB. Elsewhere than glibc a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl has no mallopt)
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def _parse_unit_in_worker(
    feed: str, unit: Sequence[Item], root: Path
) -> tuple[list[Parsed], float]:
    return parse_unit(feed, unit, root), own_peak_rss_mb()


class ParseStream:
    """Results for a feed's files in order, parsed here or by ``workers`` processes."""

    def __init__(self, feed: str, root: Path, files: Sequence[tuple[Path, int]]) -> None:
        self.feed = feed
        self.root = root
        self.files = list(files)
        total = sum(_weight(path, size) for path, size in files)
        self.workers = workers_setting() if total >= PARALLEL_MIN_BYTES else 0
        self.worker_peak_rss_mb = 0.0

    def __iter__(self) -> Iterator[Parsed]:
        """Units are cut lazily, a thread ahead (``_ahead``), and handed out with their bytes
        (``_with_data``) as they are submitted: the first part is parsed while later files are
        still being checked and cut."""
        cut = _ahead(iter_units(self.feed, self.files), UNITS_AHEAD)
        queued = _with_data(cut)
        try:
            yield from self._parse(queued)
        finally:
            queued.close()  # a gzip being handed out in parts is closed, also on error
            cut.close()  # the cutting thread stops

    def _parse(self, queued: Iterator[list[Item]]) -> Iterator[Parsed]:
        first = list(islice(queued, 2))
        queued = chain(first, queued)
        if self.workers <= 0 or len(first) < 2:
            for unit in queued:
                yield from parse_unit(self.feed, unit, self.root)
            return
        with parse_pool(self.workers) as pool:
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
