"""Land a feed drop in the warehouse: parse every new file, load ``raw.*``, quarantine the rest.

A drop is a directory with ``fhir/``, ``hl7/`` and ``csv/`` subfolders (any may be absent).
Files are keyed by the SHA-256 of their content (``audit.ingested_files``): a file seen in
any earlier run is skipped, so re-delivering a drop changes nothing. Within the new files a
record whose ``(record_id, record_hash)`` is already landed, or repeats inside the batch,
is counted as ``duplicates_skipped``. For every feed and run:

    records_in = loaded + duplicates_skipped + quarantined

and ``audit.feed_counts`` keeps those numbers. Records of types the pipeline does not use
(an Encounter, an ADT message) are not records of the feed; they are counted in ``ignored``.
A file that cannot be read at all counts as one record, quarantined whole.
One feed is loaded in one transaction: raw rows, quarantine rows and the file registry land
together or not at all.

Concurrency: on PostgreSQL the feed transaction first takes a transaction-level advisory
lock (one per warehouse), then reads the registry of known files. A second ingest started
at the same moment waits for the first to commit and then finds its files already
registered, so nothing is loaded twice. DuckDB allows one writing process per file.

Memory follows the batch, not the drop nor the history: files (a large NDJSON file in
parts) stream through the parser and are written every ``FLUSH_ROWS`` rows; which files are
already registered, and which records already landed, is decided by joins in the warehouse.
A feed with enough new bytes is parsed by worker processes while this one writes
(``ingest.parse``; ``TRIALSCREEN_INGEST_WORKERS``).

Every ingest run gets a ``load_id`` (``audit.loads``: the next integer, allocated under that
lock the first time the run lands a feed) written on each raw row it lands.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.ingest.drop import (
    TEMPORARY_SUFFIXES,
    Refused,
    _entries,
    content_hash,
    discover,
    scan,
)
from trialscreen.ingest.parse import (
    ManyParser,
    Parser,
    ParseStream,
    _contained,
    _file_refused,
    _parsers,
    _unsupported_file,
    own_peak_rss_mb,
    return_large_buffers,
)
from trialscreen.ingest.write import (
    QUARANTINE_TABLE,
    QUARANTINE_TABLE_COLUMNS,
    REGISTRY_COLUMNS,
    REGISTRY_TABLE,
    _Batch,
    _flush,
    _insert_new_codings,
    _insert_new_rows,
    already_ingested,
)
from trialscreen.warehouse import Warehouse

__all__ = [
    "FEED_COUNTS_TABLE",
    "FEED_COUNT_COLUMNS",
    "FLUSH_FILES",
    "FLUSH_ROWS",
    "LOADS_COLUMNS",
    "LOADS_TABLE",
    "QUARANTINE_TABLE",
    "QUARANTINE_TABLE_COLUMNS",
    "REGISTRY_COLUMNS",
    "REGISTRY_TABLE",
    "TEMPORARY_SUFFIXES",
    "FeedCounts",
    "ManyParser",
    "Parser",
    "Refused",
    "_contained",
    "_entries",
    "_insert_new_codings",
    "_insert_new_rows",
    "_parsers",
    "content_hash",
    "discover",
    "ensure_tables",
    "ingest",
    "ingest_feed",
    "load_id_for",
    "new_file_counts",
    "own_peak_rss_mb",
    "scan",
]

log = logging.getLogger(__name__)

FEED_COUNTS_TABLE = "audit.feed_counts"
LOADS_TABLE = "audit.loads"
# pg_advisory_xact_lock(classid, objid): serializes ingest transactions in one database
INGEST_LOCK = (0x7473, 1)  # "ts", 1

LOADS_COLUMNS: dict[str, pl.DataType] = {
    "load_id": pl.Int64(),
    "run_id": pl.String(),
    "started_at": schema.TS,
}
FEED_COUNT_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "feed": pl.String(),
    "files_seen": pl.Int64(),
    "files_new": pl.Int64(),
    "files_skipped": pl.Int64(),
    "files_quarantined": pl.Int64(),
    "records_in": pl.Int64(),
    "loaded": pl.Int64(),
    "duplicates_skipped": pl.Int64(),
    "quarantined": pl.Int64(),
    "ignored": pl.Int64(),
    "latest_record_at": schema.TS,
    "seconds": pl.Float64(),
    "finished_at": schema.TS,
}

FLUSH_ROWS = 125_000  # rows parsed before a batch is written (bounds memory)
# files (or parts) parsed before a batch is written: each small file brings frames of its own,
# and 5,000 bundles of 25 rows each held about 400 MB more than 125,000 rows of one NDJSON part
# (docs/decisions.md, "The ingest returns the memory it frees")
FLUSH_FILES = 1_000
# DuckDB's buffer pool during an ingest (default: 80 % of the machine's memory, and the feed's
# uncommitted rows stayed in it, so the ingest grew with the drop); past it DuckDB writes
# blocks out and spills to ``<warehouse>.tmp``. PostgreSQL has its own server settings.
INGEST_MEMORY_ENV = "TRIALSCREEN_INGEST_DUCKDB_MEMORY"
# 512MB until 2026-12-01 (docs/decisions.md, "The ingest returns the memory it frees")
INGEST_DUCKDB_MEMORY = "128MB"
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*[KMGT]i?B$", re.IGNORECASE)


@dataclass
class FeedCounts:
    feed: str
    files_seen: int = 0
    files_new: int = 0
    files_skipped: int = 0
    files_quarantined: int = 0
    records_in: int = 0
    loaded: int = 0
    duplicates_skipped: int = 0
    quarantined: int = 0
    ignored: int = 0
    latest_record_at: datetime | None = None
    seconds: float = 0.0
    loaded_by_table: dict[str, int] = field(default_factory=dict)
    # the highest peak RSS of a parse worker process (0: parsed in this process); not stored
    worker_peak_rss_mb: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.records_in == self.loaded + self.duplicates_skipped + self.quarantined

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        row.pop("loaded_by_table")
        row.pop("worker_peak_rss_mb")
        return row


def _tables() -> dict[str, dict[str, pl.DataType]]:
    """Every table :func:`ensure_tables` makes, with its columns."""
    tables = {
        f"raw.{schema.raw_table(feed, entity)}": {**columns, **schema.LOAD_COLUMNS}
        for feed in schema.FEEDS
        for entity, columns in schema.TABLE_COLUMNS.items()
    }
    tables[QUARANTINE_TABLE] = QUARANTINE_TABLE_COLUMNS
    tables[REGISTRY_TABLE] = REGISTRY_COLUMNS
    tables[FEED_COUNTS_TABLE] = FEED_COUNT_COLUMNS
    tables[LOADS_TABLE] = LOADS_COLUMNS
    return tables


def ensure_tables(wh: Warehouse) -> None:
    """Create the raw, quarantine and audit tables this module writes (idempotent). A run
    calls it six times a night: when every table has every column, one read of the catalog
    is all it does (docs/decisions.md, "The catalog read once")."""
    tables = _tables()
    present = wh.columns_by_table({table.split(".", 1)[0] for table in tables})
    if all(set(columns) <= present.get(table, set()) for table, columns in tables.items()):
        return
    for feed in schema.FEEDS:
        for entity in schema.TABLE_COLUMNS:
            table = f"raw.{schema.raw_table(feed, entity)}"
            missing_offsets = _missing_offset_columns(present.get(table), entity)
            wh.ensure_table(table, tables[table])
            _backfill_offsets(wh, table, missing_offsets)
    for table in (QUARANTINE_TABLE, REGISTRY_TABLE, FEED_COUNTS_TABLE, LOADS_TABLE):
        wh.ensure_table(table, tables[table])


def _missing_offset_columns(present: set[str] | None, entity: str) -> list[str]:
    """Timestamp columns of an existing raw table (``present``: its columns, None when it does
    not exist) that have no ``_offset_min`` partner yet."""
    if present is None:
        return []
    return [c for c in schema.timestamp_columns(entity) if f"{c}_offset_min" not in present]


def _backfill_offsets(wh: Warehouse, table: str, columns: list[str]) -> None:
    """Rows landed before timestamps were kept as sent hold naive UTC: offset 0 says so, and
    staging reads them exactly as before (docs/decisions.md, "Local time")."""
    for column in columns:
        wh.execute(
            f"update {table} set {column}_offset_min = 0 "
            f"where {column} is not null and {column}_offset_min is null"
        )


def _lock_ingest(wh: Warehouse) -> None:
    """Inside a transaction: wait until no other ingest transaction runs (PostgreSQL)."""
    if wh.engine == "postgres":
        wh.execute(f"select pg_advisory_xact_lock({wh.param}, {wh.param})", list(INGEST_LOCK))


def load_id_for(wh: Warehouse, run_id: str) -> int:
    """The run's load id: the one already allocated, else the next integer (call inside the
    ingest transaction, after ``_lock_ingest``, so two runs never get the same number)."""
    found = wh.scalar(f"select load_id from {LOADS_TABLE} where run_id = {wh.param}", [run_id])
    if found is not None:
        return int(found)
    next_id = int(wh.scalar(f"select coalesce(max(load_id), 0) + 1 from {LOADS_TABLE}"))
    now = datetime.now(UTC).replace(tzinfo=None)
    row = {"load_id": next_id, "run_id": run_id, "started_at": now}
    wh.load_frame(LOADS_TABLE, pl.DataFrame([row], schema=LOADS_COLUMNS))
    return next_id


@contextmanager
def _bounded_duckdb(wh: Warehouse) -> Iterator[None]:
    """DuckDB's ``memory_limit`` set to ``TRIALSCREEN_INGEST_DUCKDB_MEMORY`` (default
    ``INGEST_DUCKDB_MEMORY``) for the ingest, then restored."""
    if wh.engine != "duckdb":
        yield
        return
    limit = os.environ.get(INGEST_MEMORY_ENV, "").strip() or INGEST_DUCKDB_MEMORY
    if not _MEMORY.match(limit):
        raise ValueError(f"{INGEST_MEMORY_ENV}: expected a size such as 512MB or 1GiB")
    before = str(wh.scalar("select current_setting('memory_limit')"))
    wh.execute(f"set memory_limit = '{limit}'")
    try:
        yield
        # the feed's rows written into the database file under the same cap: left to the
        # next checkpoint (the connection's close at the latest), DuckDB did it under its
        # default limit, 80 % of the machine (docs/decisions.md, "The ingest returns the
        # memory it frees"). Only an optimization: if it cannot run, the close still does it
        try:
            wh.execute("checkpoint")
        except Exception as exc:  # noqa: BLE001 - the feed is committed already
            log.debug("checkpoint after the feed skipped", extra={"error": type(exc).__name__})
    finally:
        if _MEMORY.match(before.replace(" ", "")):
            wh.execute(f"set memory_limit = '{before.replace(' ', '')}'")


def ingest_feed(
    wh: Warehouse,
    drop: Path,
    feed: str,
    run_id: str,
    progress: Callable[[int], None] | None = None,
) -> FeedCounts:
    """Parse and land every new file of one feed. Never raises for bad input.

    Files stream through the parser (in worker processes for a large feed) and are written
    every ``FLUSH_ROWS`` rows, so memory stays bounded by the batch, not the drop; the whole
    feed is one transaction.
    """
    accepts = _parsers()[feed][0]
    started = time.perf_counter()
    return_large_buffers()
    counts = FeedCounts(feed=feed)
    with _bounded_duckdb(wh), wh.transaction():
        # the registry is read under the ingest lock: a concurrent ingest of the same drop
        # waits here, then sees these files as already ingested (no record lands twice)
        _lock_ingest(wh)
        load_id = load_id_for(wh, run_id)
        entries = list(_entries(drop, feed))
        known = already_ingested(wh, feed, sorted({key for _, key, _, _ in entries}))
        todo: list[tuple[Path, str, int]] = []
        unsupported: dict[str, ParsedFile] = {}
        for path, digest, size, refused in entries:
            counts.files_seen += 1
            if digest in known:
                counts.files_skipped += 1
                # file names can carry PHI (Synthea names bundles after the patient): log a hash.
                # Debug: a night re-delivering 20,000 files logs one summary line at info
                log.debug("file already ingested", extra={"feed": feed, "file_sha256": digest[:16]})
                if progress:
                    progress(1)
                continue
            known.add(digest)  # the same content twice in one drop is one file
            rel = path.relative_to(drop).as_posix()
            if refused is not None:
                log.warning("drop entry refused", extra={"feed": feed, "reason": refused.reason})
                unsupported[rel] = _file_refused(feed, rel, refused.reason)
            elif not accepts(path):
                unsupported[rel] = _unsupported_file(feed, rel, path)
            todo.append((path, digest, size))
        del entries
        if counts.files_skipped:
            log.info(
                "files already ingested, skipped",
                extra={"feed": feed, "files_skipped": counts.files_skipped},
            )

        batch = _Batch()
        stream = ParseStream(
            feed,
            drop,
            [(p, size) for p, _, size in todo if p.relative_to(drop).as_posix() not in unsupported],
        )
        parsed_iter = iter(stream)
        for path, digest, size in todo:
            rel = path.relative_to(drop).as_posix()
            last = False
            while not last:
                if rel in unsupported:
                    parsed, last = unsupported.pop(rel), True
                else:
                    parsed, last = next(parsed_iter)
                batch.add(parsed, digest, size, last, path)
                if batch.rows >= FLUSH_ROWS or len(batch.parts) >= FLUSH_FILES:
                    _flush(wh, batch, counts, run_id, load_id)
            if progress:
                progress(1)
        _flush(wh, batch, counts, run_id, load_id)
        counts.worker_peak_rss_mb = stream.worker_peak_rss_mb
        counts.seconds = round(time.perf_counter() - started, 3)
        wh.load_frame(
            FEED_COUNTS_TABLE,
            pl.DataFrame(
                [
                    {
                        **counts.as_row(),
                        "run_id": run_id,
                        "finished_at": datetime.now(UTC).replace(tzinfo=None),
                    }
                ],
                schema=FEED_COUNT_COLUMNS,
            ),
        )
    for table in [*counts.loaded_by_table, QUARANTINE_TABLE, REGISTRY_TABLE]:
        wh.analyze(table)
    if not counts.balanced:  # a parser broke its contract: say so loudly, lose nothing
        log.error("feed counts do not add up", extra={"feed": feed, **counts.as_row()})
    log.info("feed ingested", extra=counts.as_row())
    return counts


def new_file_counts(warehouse: str | Path, drop: Path) -> dict[str, int]:
    """How many files of each feed in the drop have not been ingested yet (no PHI)."""
    with Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        result = {}
        for feed in schema.FEEDS:
            keys = [key for _, key, _, _ in _entries(drop, feed)]
            known = already_ingested(wh, feed, sorted(set(keys)))
            result[feed] = sum(key not in known for key in keys)
    return result


def ingest(
    wh: Warehouse,
    drop: Path,
    run_id: str,
    feeds: Iterable[str] = schema.FEEDS,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, FeedCounts]:
    """Ingest every feed of a drop; returns the counts per feed."""
    ensure_tables(wh)
    results: dict[str, FeedCounts] = {}
    for feed in feeds:

        def tick(n: int, _feed: str = feed) -> None:
            if progress:
                progress(_feed, n)

        results[feed] = ingest_feed(wh, drop, feed, run_id, progress=tick)
    return results
