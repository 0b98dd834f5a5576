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
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.warehouse import Warehouse

log = logging.getLogger(__name__)

QUARANTINE_TABLE = "quarantine.records"
REGISTRY_TABLE = "audit.ingested_files"
FEED_COUNTS_TABLE = "audit.feed_counts"

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
    "finished_at": schema.TS,
}

Parser = Callable[[Path, Path], ParsedFile]


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
    loaded_by_table: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.records_in == self.loaded + self.duplicates_skipped + self.quarantined

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        row.pop("loaded_by_table")
        return row


def _parsers() -> dict[str, tuple[Callable[[Path], bool], Parser]]:
    from trialscreen.feeds.csv import is_csv_file, parse_csv_file
    from trialscreen.feeds.fhir import is_fhir_file, parse_fhir_file
    from trialscreen.feeds.hl7v2 import is_hl7_file, parse_hl7_file

    return {
        "fhir": (is_fhir_file, parse_fhir_file),
        "hl7": (is_hl7_file, parse_hl7_file),
        "csv": (is_csv_file, parse_csv_file),
    }


def discover(drop: Path, feed: str) -> list[Path]:
    """Files of one feed in a drop, in a stable order (sorted relative paths)."""
    folder = drop / feed
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_tables(wh: Warehouse) -> None:
    """Create the raw, quarantine and audit tables this module writes (idempotent)."""
    for feed in schema.FEEDS:
        for entity, columns in schema.RAW_COLUMNS.items():
            wh.ensure_table(
                f"raw.{schema.raw_table(feed, entity)}", {**columns, **schema.LOAD_COLUMNS}
            )
    wh.ensure_table(QUARANTINE_TABLE, QUARANTINE_TABLE_COLUMNS)
    wh.ensure_table(REGISTRY_TABLE, REGISTRY_COLUMNS)
    wh.ensure_table(FEED_COUNTS_TABLE, FEED_COUNT_COLUMNS)


def _known_hashes(wh: Warehouse, feed: str) -> set[str]:
    rows = wh.query(f"select content_hash from {REGISTRY_TABLE} where feed = {wh.param}", [feed])
    return {r[0] for r in rows}


def _unsupported_file(feed: str, rel: str, path: Path) -> ParsedFile:
    """A file in a feed folder that no parser claims: quarantined as a file, never ignored."""
    parsed = ParsedFile(feed=feed, source_file=rel, records_in=1)
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace")
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


def _insert_new_rows(
    wh: Warehouse, table: str, frame: pl.DataFrame, run_id: str, now: datetime
) -> pl.DataFrame:
    """Append rows not yet landed; return loaded row counts per source_file.

    Dedup is on ``(record_id, record_hash)`` against the table and within the batch (first
    occurrence by file and position wins), done in SQL so it scales with the engine.
    """
    batch = frame.with_columns(pl.lit(run_id).alias("run_id"), pl.lit(now).alias("loaded_at"))
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


def _latest_effective(frames: Iterable[pl.DataFrame]) -> datetime | None:
    latest: datetime | None = None
    for frame in frames:
        if "effective_at" in frame.columns and frame.height:
            value = frame.get_column("effective_at").max()
            if isinstance(value, datetime) and (latest is None or value > latest):
                latest = value
    return latest


def ingest_feed(
    wh: Warehouse,
    drop: Path,
    feed: str,
    run_id: str,
    parse: Parser | None = None,
    accepts: Callable[[Path], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FeedCounts:
    """Parse and land every new file of one feed. Never raises for bad input."""
    if parse is None or accepts is None:
        accepts, parse = _parsers()[feed]
    counts = FeedCounts(feed=feed)
    known = _known_hashes(wh, feed)
    parsed_files: list[tuple[ParsedFile, str, int]] = []
    for path in discover(drop, feed):
        counts.files_seen += 1
        digest = content_hash(path)
        rel = path.relative_to(drop).as_posix()
        if digest in known:
            counts.files_skipped += 1
            # file names can carry PHI (Synthea names bundles after the patient): log the hash
            log.info("file already ingested", extra={"feed": feed, "file_sha256": digest[:16]})
            if progress:
                progress(1)
            continue
        known.add(digest)
        parsed = parse(path, drop) if accepts(path) else _unsupported_file(feed, rel, path)
        parsed_files.append((parsed, digest, path.stat().st_size))
        if progress:
            progress(1)

    now = datetime.now(UTC).replace(tzinfo=None)
    per_file_loaded: dict[str, int] = {}
    with wh.transaction():
        for entity in schema.ENTITIES:
            frames = [p.tables[entity] for p, _, _ in parsed_files if entity in p.tables]
            frames = [f for f in frames if f.height]
            if not frames:
                continue
            frame = pl.concat([schema.conform(entity, f) for f in frames], how="vertical")
            table = f"raw.{schema.raw_table(feed, entity)}"
            loaded = _insert_new_rows(wh, table, frame, run_id, now)
            n_loaded = int(loaded.get_column("loaded").sum()) if loaded.height else 0
            counts.loaded += n_loaded
            counts.duplicates_skipped += frame.height - n_loaded
            counts.loaded_by_table[table] = n_loaded
            for source_file, n in loaded.iter_rows():
                per_file_loaded[source_file] = per_file_loaded.get(source_file, 0) + n
            latest = _latest_effective([frame])
            if latest and (counts.latest_record_at is None or latest > counts.latest_record_at):
                counts.latest_record_at = latest

        quarantine = [p.quarantined for p, _, _ in parsed_files if p.quarantined.height]
        if quarantine:
            # NUL cannot be stored in PostgreSQL text: keep payloads identical on both engines
            q = pl.concat(quarantine, how="vertical").with_columns(
                pl.col("raw_payload").str.replace_all("\x00", "\ufffd", literal=True),
                pl.lit(run_id).alias("run_id"),
                pl.lit(now).alias("quarantined_at"),
            )
            wh.load_frame(QUARANTINE_TABLE, q.select(list(QUARANTINE_TABLE_COLUMNS)))

        registry_rows = []
        for parsed, digest, size in parsed_files:
            n_quarantined = parsed.quarantined.height
            file_quarantined = parsed.quarantined.filter(pl.col("scope") == "file").height > 0
            loaded_here = per_file_loaded.get(parsed.source_file, 0)
            counts.files_new += 1
            counts.files_quarantined += int(file_quarantined)
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
        if registry_rows:
            wh.load_frame(REGISTRY_TABLE, pl.DataFrame(registry_rows, schema=REGISTRY_COLUMNS))
        wh.load_frame(
            FEED_COUNTS_TABLE,
            pl.DataFrame(
                [{**counts.as_row(), "run_id": run_id, "finished_at": now}],
                schema=FEED_COUNT_COLUMNS,
            ),
        )
    if not counts.balanced:  # a parser broke its contract: say so loudly, lose nothing
        log.error("feed counts do not add up", extra={"feed": feed, **counts.as_row()})
    log.info("feed ingested", extra=counts.as_row())
    return counts


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
