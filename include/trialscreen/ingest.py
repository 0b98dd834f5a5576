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

Every ingest run gets a ``load_id`` (``audit.loads``: the next integer, allocated under that
lock the first time the run lands a feed) written on each raw row it lands.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile, bounded
from trialscreen.feeds.contain import contain_values
from trialscreen.warehouse import Warehouse

log = logging.getLogger(__name__)

QUARANTINE_TABLE = "quarantine.records"
REGISTRY_TABLE = "audit.ingested_files"
FEED_COUNTS_TABLE = "audit.feed_counts"
LOADS_TABLE = "audit.loads"
# pg_advisory_xact_lock(classid, objid): serializes ingest transactions in one database
INGEST_LOCK = (0x7473, 1)  # "ts", 1

QUARANTINE_TABLE_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    **schema.QUARANTINE_COLUMNS,
    "quarantined_at": schema.TS,
}
REGISTRY_COLUMNS: dict[str, pl.DataType] = {
    "content_hash": pl.String(),
    "feed": pl.String(),
    "source_file": pl.String(),
    "size_bytes": pl.Int64(),
    "run_id": pl.String(),
    "ingested_at": schema.TS,
    "records_in": pl.Int64(),
    "loaded": pl.Int64(),
    "duplicates_skipped": pl.Int64(),
    "quarantined": pl.Int64(),
    "ignored": pl.Int64(),
}
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

Parser = Callable[[Path, Path], ParsedFile]
ManyParser = Callable[[Sequence[Path], Path], Iterator[ParsedFile]]
FLUSH_ROWS = 250_000  # rows parsed before a batch is written (bounds memory)


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

    @property
    def balanced(self) -> bool:
        return self.records_in == self.loaded + self.duplicates_skipped + self.quarantined

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        row.pop("loaded_by_table")
        return row


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


# Drop hygiene (docs/decisions.md "Hostile input"): a name starting with "." (a file, or a
# folder and all it holds) and a temporary name (a transfer still being written, an
# editor's backup) are not part of the drop yet: skipped, neither registered nor counted.
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".filepart", ".crdownload", "~")


@dataclass(frozen=True)
class Refused:
    """A drop entry that is not a regular file (symlink, FIFO, socket, device), or cannot be
    opened: never followed, never read. ``key`` stands for the content hash in the registry
    (``refused:`` + the sha256 of the reason, the relative path and, for a symlink, its target
    as a string), so the same entry is reported once, not every night."""

    path: Path
    reason: str
    key: str
    size: int = 0


def _skipped_name(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def _refused(path: Path, drop: Path, reason: str, target: str = "") -> Refused:
    rel = path.relative_to(drop).as_posix()
    key = hashlib.sha256(f"{reason}\0{rel}\0{target}".encode("utf-8", "replace")).hexdigest()
    return Refused(path, reason, f"refused:{key}")


def scan(drop: Path, feed: str) -> tuple[list[Path], list[Refused]]:
    """One feed folder of a drop, walked with ``lstat`` (nothing followed, nothing opened):
    its regular files and the entries it refuses, each in a stable order (relative paths).

    Symlinks (to a file or a folder, inside or outside the drop), FIFOs, sockets and devices
    are refused; so is a feed folder that is itself a symlink. Walking never follows a link,
    so every file returned lies inside the drop's feed folder.
    """
    folder = drop / feed
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return [], []
    if not stat.S_ISDIR(mode):
        kind = bounded.file_kind(mode)
        target = os.readlink(folder) if stat.S_ISLNK(mode) else ""
        reason = f"feed folder is a {kind}, not a folder (not followed)"
        return [], [_refused(folder, drop, reason, target)]
    files: list[Path] = []
    refused: list[Refused] = []
    pending = [folder]
    while pending:
        here = pending.pop()
        try:
            entries = list(os.scandir(here))
        except OSError as exc:
            reason = f"folder cannot be listed ({type(exc).__name__})"
            refused.append(_refused(here, drop, reason))
            continue
        for entry in entries:
            if _skipped_name(entry.name):
                continue
            path = Path(entry.path)
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                refused.append(_refused(path, drop, f"cannot be listed ({type(exc).__name__})"))
                continue
            if stat.S_ISDIR(mode):
                pending.append(path)
            elif stat.S_ISREG(mode):
                files.append(path)
            else:
                kind = bounded.file_kind(mode)
                target = os.readlink(path) if stat.S_ISLNK(mode) else ""
                reason = f"{kind} in the drop: refused (not followed, not read)"
                refused.append(_refused(path, drop, reason, target))
    return sorted(files), sorted(refused, key=lambda r: r.path)


def discover(drop: Path, feed: str) -> list[Path]:
    """Regular files of one feed in a drop, in a stable order (sorted relative paths)."""
    return scan(drop, feed)[0]


def content_hash(path: Path) -> str:
    """sha256 of the file's bytes; ``bounded.RefusedInput`` when it is not (or no longer) a
    regular file or cannot be opened: it is never followed and never blocks."""
    digest = hashlib.sha256()
    with bounded.open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(drop: Path, feed: str) -> Iterator[tuple[Path, str, int, Refused | None]]:
    """Every entry of a feed folder with its registry key and size (refused ones included)."""
    files, refused = scan(drop, feed)
    for path in files:
        try:
            size = path.stat().st_size
            yield path, content_hash(path), size, None
        except bounded.RefusedInput as exc:
            gone = _refused(path, drop, exc.reason)
            yield path, gone.key, 0, gone
        except OSError as exc:  # vanished between listing and opening
            gone = _refused(path, drop, f"file cannot be read ({type(exc).__name__})")
            yield path, gone.key, 0, gone
    for entry in refused:
        yield entry.path, entry.key, entry.size, entry


def ensure_tables(wh: Warehouse) -> None:
    """Create the raw, quarantine and audit tables this module writes (idempotent)."""
    for feed in schema.FEEDS:
        for entity, columns in schema.TABLE_COLUMNS.items():
            table = f"raw.{schema.raw_table(feed, entity)}"
            missing_offsets = _missing_offset_columns(wh, table, entity)
            wh.ensure_table(table, {**columns, **schema.LOAD_COLUMNS})
            _backfill_offsets(wh, table, missing_offsets)
    wh.ensure_table(QUARANTINE_TABLE, QUARANTINE_TABLE_COLUMNS)
    wh.ensure_table(REGISTRY_TABLE, REGISTRY_COLUMNS)
    wh.ensure_table(FEED_COUNTS_TABLE, FEED_COUNT_COLUMNS)
    wh.ensure_table(LOADS_TABLE, LOADS_COLUMNS)


def _missing_offset_columns(wh: Warehouse, table: str, entity: str) -> list[str]:
    """Timestamp columns of an existing raw table that have no ``_offset_min`` partner yet."""
    wanted = schema.timestamp_columns(entity)
    if not wanted or not wh.table_exists(table):
        return []
    schema_name, name = table.split(".", 1)
    present = {
        r[0]
        for r in wh.query(
            "select column_name from information_schema.columns "
            f"where table_schema = {wh.param} and table_name = {wh.param}",
            [schema_name, name],
        )
    }
    return [c for c in wanted if f"{c}_offset_min" not in present]


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


def _known_hashes(wh: Warehouse, feed: str) -> set[str]:
    rows = wh.query(f"select content_hash from {REGISTRY_TABLE} where feed = {wh.param}", [feed])
    return {r[0] for r in rows}


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
            rel = path.relative_to(root).as_posix()
            reason = f"file could not be parsed ({type(exc).__name__})"
            log.warning("file quarantined", extra={"feed": feed, "reason": reason})
            parsed = _file_refused(feed, rel, reason)
        done += 1
        yield parsed


def _insert_new_rows(
    wh: Warehouse, table: str, frame: pl.DataFrame, run_id: str, now: datetime, load_id: int
) -> pl.DataFrame:
    """Append rows not yet landed; return loaded row counts per source_file.

    Dedup is on ``(record_id, record_hash)`` against the table and within the batch (first
    occurrence by file and position wins), done in SQL so it scales with the engine.
    """
    batch = frame.with_columns(
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).alias("loaded_at"),
        pl.lit(load_id, dtype=pl.Int64).alias("load_id"),
    )
    wh.execute("drop table if exists _ts_batch")
    wh.execute(
        "create temporary table _ts_batch ("
        + ", ".join(f"{c} {wh.column_type(t)}" for c, t in batch.schema.items())
        + ")"
    )
    wh.load_frame("_ts_batch", batch)
    cols = ", ".join(batch.columns)
    wh.execute("drop table if exists _ts_new")
    wh.execute(
        f"""
        create temporary table _ts_new as
        with ranked as (
            select {cols},
                   row_number() over (
                       partition by record_id, record_hash
                       order by source_file, source_position
                   ) as _rn
            from _ts_batch
        )
        select {cols} from ranked b
        where _rn = 1
          and not exists (
              select 1 from {table} t
              where t.record_id = b.record_id and t.record_hash = b.record_hash
          )
        """
    )
    wh.execute(f"insert into {table} ({cols}) select {cols} from _ts_new")
    counts = wh.query("select source_file, count(*) from _ts_new group by source_file")
    wh.execute("drop table _ts_new")
    wh.execute("drop table _ts_batch")
    return pl.DataFrame(counts, schema={"source_file": pl.String, "loaded": pl.Int64}, orient="row")


def _insert_new_codings(
    wh: Warehouse,
    feed: str,
    entity: str,
    frame: pl.DataFrame,
    run_id: str,
    now: datetime,
    load_id: int,
) -> None:
    """Append the codings child rows of records not yet landed.

    Called before the parents are inserted: a child row is skipped when its parent's
    ``(record_id, record_hash)`` is already in the parent table, or when an earlier parent
    of the batch (by file and position) has the same pair (docs/decisions.md "Every coding is
    kept"). Children without a parent table (Medication resources) dedup on themselves.
    """
    table = f"raw.{schema.raw_table(feed, schema.CODINGS)}"
    parent = f"raw.{schema.raw_table(feed, entity)}" if entity in schema.RAW_COLUMNS else table
    batch = frame.with_columns(
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).alias("loaded_at"),
        pl.lit(load_id, dtype=pl.Int64).alias("load_id"),
    )
    wh.execute("drop table if exists _ts_codings")
    wh.execute(
        "create temporary table _ts_codings ("
        + ", ".join(f"{c} {wh.column_type(t)}" for c, t in batch.schema.items())
        + ")"
    )
    wh.load_frame("_ts_codings", batch)
    cols = ", ".join(batch.columns)
    same_entity = "" if parent != table else f"and t.entity = {wh.param}"
    params = [] if parent != table else [entity]
    wh.execute(
        f"""
        insert into {table} ({cols})
        with ranked as (
            select {cols},
                   dense_rank() over (
                       partition by entity, record_id, record_hash
                       order by source_file, source_position
                   ) as _rn
            from _ts_codings
        )
        select {cols} from ranked b
        where _rn = 1
          and not exists (
              select 1 from {parent} t
              where t.record_id = b.record_id and t.record_hash = b.record_hash {same_entity}
          )
        """,
        params,
    )
    wh.execute("drop table _ts_codings")


def _latest_effective(frame: pl.DataFrame) -> datetime | None:
    if "effective_at" in frame.columns and frame.height:
        value = frame.get_column("effective_at").max()
        if isinstance(value, datetime):
            return value
    return None


def _default_many(parse: Parser) -> ManyParser:
    def many(paths: Sequence[Path], root: Path) -> Iterator[ParsedFile]:
        for path in paths:
            yield parse(path, root)

    return many


@dataclass
class _Batch:
    """Parsed files waiting to be written; flushed every ``FLUSH_ROWS`` rows."""

    files: list[tuple[ParsedFile, str, int]] = field(default_factory=list)
    rows: int = 0

    def add(self, parsed: ParsedFile, digest: str, size: int) -> None:
        self.files.append((parsed, digest, size))
        self.rows += parsed.rows_out + parsed.quarantined.height


def _flush(wh: Warehouse, batch: _Batch, counts: FeedCounts, run_id: str, load_id: int) -> None:
    """Write one batch: new raw rows, quarantine rows, registry rows (inside the feed's
    transaction). Rows of earlier flushes are already in the tables, so the anti-join in
    ``_insert_new_rows`` also catches duplicates across flushes."""
    if not batch.files:
        return
    feed = counts.feed
    now = datetime.now(UTC).replace(tzinfo=None)
    per_file_loaded: dict[str, int] = {}
    codings = [p.codings for p, _, _ in batch.files if p.codings.height]
    all_codings = pl.concat(codings, how="vertical") if codings else None
    if all_codings is not None:
        table = f"raw.{schema.raw_table(feed, schema.CODINGS)}"
        for (entity,), part in all_codings.partition_by("entity", as_dict=True).items():
            # child rows before their parents: a parent landed earlier skips its children
            _insert_new_codings(wh, feed, str(entity), part, run_id, now, load_id)
        counts.loaded_by_table.setdefault(table, 0)
    for entity in schema.ENTITIES:
        frames = [
            schema.conform(entity, p.tables[entity])
            for p, _, _ in batch.files
            if entity in p.tables and p.tables[entity].height
        ]
        if not frames:
            continue
        frame = pl.concat(frames, how="vertical")
        table = f"raw.{schema.raw_table(feed, entity)}"
        loaded = _insert_new_rows(wh, table, frame, run_id, now, load_id)
        n_loaded = int(loaded.get_column("loaded").sum()) if loaded.height else 0
        counts.loaded += n_loaded
        counts.duplicates_skipped += frame.height - n_loaded
        counts.loaded_by_table[table] = counts.loaded_by_table.get(table, 0) + n_loaded
        for source_file, n in loaded.iter_rows():
            per_file_loaded[source_file] = per_file_loaded.get(source_file, 0) + n
        latest = _latest_effective(frame)
        if latest and (counts.latest_record_at is None or latest > counts.latest_record_at):
            counts.latest_record_at = latest

    quarantine = [p.quarantined for p, _, _ in batch.files if p.quarantined.height]
    if quarantine:
        # NUL cannot be stored in PostgreSQL text: keep payloads identical on both engines
        q = pl.concat(quarantine, how="vertical").with_columns(
            pl.col("raw_payload").str.replace_all("\x00", "\ufffd", literal=True),
            pl.lit(run_id).alias("run_id"),
            pl.lit(now).alias("quarantined_at"),
        )
        wh.load_frame(QUARANTINE_TABLE, q.select(list(QUARANTINE_TABLE_COLUMNS)))

    registry_rows = []
    for parsed, digest, size in batch.files:
        n_quarantined = parsed.quarantined.height
        loaded_here = per_file_loaded.get(parsed.source_file, 0)
        counts.files_new += 1
        counts.files_quarantined += int((parsed.quarantined.get_column("scope") == "file").any())
        counts.records_in += parsed.records_in
        counts.quarantined += n_quarantined
        counts.ignored += sum(parsed.ignored.values())
        registry_rows.append(
            {
                "content_hash": digest,
                "feed": feed,
                "source_file": parsed.source_file,
                "size_bytes": size,
                "run_id": run_id,
                "ingested_at": now,
                "records_in": parsed.records_in,
                "loaded": loaded_here,
                "duplicates_skipped": parsed.rows_out - loaded_here,
                "quarantined": n_quarantined,
                "ignored": sum(parsed.ignored.values()),
            }
        )
    wh.load_frame(REGISTRY_TABLE, pl.DataFrame(registry_rows, schema=REGISTRY_COLUMNS))
    batch.files.clear()
    batch.rows = 0


def ingest_feed(
    wh: Warehouse,
    drop: Path,
    feed: str,
    run_id: str,
    progress: Callable[[int], None] | None = None,
) -> FeedCounts:
    """Parse and land every new file of one feed. Never raises for bad input.

    Files stream through the parser and are written every ``FLUSH_ROWS`` rows, so memory
    stays bounded by the batch, not the drop; the whole feed is one transaction.
    """
    accepts, parse, parse_many = _parsers()[feed]
    started = time.perf_counter()
    counts = FeedCounts(feed=feed)
    with wh.transaction():
        # the registry is read under the ingest lock: a concurrent ingest of the same drop
        # waits here, then sees these files as already ingested (no record lands twice)
        _lock_ingest(wh)
        load_id = load_id_for(wh, run_id)
        known = _known_hashes(wh, feed)
        todo: list[tuple[Path, str, int]] = []
        unsupported: list[ParsedFile] = []
        for path, digest, size, refused in _entries(drop, feed):
            counts.files_seen += 1
            if digest in known:
                counts.files_skipped += 1
                # file names can carry PHI (Synthea names bundles after the patient): log a hash.
                # Debug: a night re-delivering 20,000 files logs one summary line at info
                log.debug("file already ingested", extra={"feed": feed, "file_sha256": digest[:16]})
                if progress:
                    progress(1)
                continue
            known.add(digest)
            rel = path.relative_to(drop).as_posix()
            if refused is not None:
                log.warning("drop entry refused", extra={"feed": feed, "reason": refused.reason})
                unsupported.append(_file_refused(feed, rel, refused.reason))
            elif not accepts(path):
                unsupported.append(_unsupported_file(feed, rel, path))
            todo.append((path, digest, size))
        if counts.files_skipped:
            log.info(
                "files already ingested, skipped",
                extra={"feed": feed, "files_skipped": counts.files_skipped},
            )

        batch = _Batch()
        by_rel = {p.source_file: p for p in unsupported}
        parseable = [p for p, _, _ in todo if p.relative_to(drop).as_posix() not in by_rel]
        parsed_iter = _contained(feed, parseable, drop, parse, parse_many)
        for path, digest, size in todo:
            rel = path.relative_to(drop).as_posix()
            parsed = by_rel[rel] if rel in by_rel else next(parsed_iter)
            batch.add(contain_values(parsed), digest, size)
            if progress:
                progress(1)
            if batch.rows >= FLUSH_ROWS:
                _flush(wh, batch, counts, run_id, load_id)
        _flush(wh, batch, counts, run_id, load_id)
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
            known = _known_hashes(wh, feed)
            result[feed] = sum(key not in known for _, key, _, _ in _entries(drop, feed))
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
