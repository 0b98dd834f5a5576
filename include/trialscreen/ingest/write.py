"""Writing parsed files inside a feed's transaction: new raw rows and their codings (dedup
within the batch in polars, against what is landed in the warehouse), quarantine rows, and
one registry row per file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.fhir import all_lines_not_json
from trialscreen.warehouse import Warehouse

if TYPE_CHECKING:
    from trialscreen.ingest import FeedCounts

QUARANTINE_TABLE = "quarantine.records"
REGISTRY_TABLE = "audit.ingested_files"
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
NOT_JSON = "no line of the file is valid JSON"


def already_ingested(wh: Warehouse, feed: str, keys: list[str]) -> set[str]:
    """Which of this drop's registry keys are already registered for the feed: the drop's
    keys are staged (``Warehouse.staged``) and the registry is joined in the warehouse, so memory
    follows the drop's file count, not the history of every file ever ingested."""
    if not keys:
        return set()
    drop_files = pl.DataFrame({"content_hash": keys}, schema={"content_hash": pl.String()})
    with wh.staged("_ts_drop_files", drop_files) as staged:
        rows = wh.query(
            f"select distinct d.content_hash from {staged} d "
            f"join {REGISTRY_TABLE} r on r.content_hash = d.content_hash and r.feed = {wh.param}",
            [feed],
        )
    return {r[0] for r in rows}


def _stamped(frame: pl.DataFrame, run_id: str, now: datetime, load_id: int) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).alias("loaded_at"),
        pl.lit(load_id, dtype=pl.Int64).alias("load_id"),
    )


_PAIR = ["record_id", "record_hash"]
_ORDER = ["source_file", "source_position"]


def _not_landed(
    wh: Warehouse, table: str, rows: pl.DataFrame, where: str = "", params: Sequence[Any] = ()
) -> pl.DataFrame:
    """The rows whose ``(record_id, record_hash)`` pair ``table`` does not hold yet: the
    rows' distinct pairs are staged and joined to the table in the warehouse (the engine
    builds its hash table on the batch, the smaller side, and scans the table), so memory
    follows the batch, not the table; the anti-join against the pairs found runs here."""
    keys = rows.select(_PAIR).unique()
    with wh.staged("_ts_pairs", keys) as staged:
        found = wh.query(
            f"select distinct b.record_id, b.record_hash from {staged} b "
            f"join {table} t on t.record_id = b.record_id and t.record_hash = b.record_hash"
            + where,
            list(params),
        )
    if not found:
        return rows
    landed = pl.DataFrame(found, schema=keys.schema, orient="row")
    return rows.join(landed, on=_PAIR, how="anti")


def _insert_new_rows(
    wh: Warehouse, table: str, frame: pl.DataFrame, run_id: str, now: datetime, load_id: int
) -> pl.DataFrame:
    """Append rows not yet landed; return loaded row counts per source_file.

    Dedup is on ``(record_id, record_hash)`` against the table and within the batch (first
    occurrence by file and position wins). Within the batch in polars (the batch is in
    memory already); against the table in the warehouse (:func:`_not_landed`). Nothing is
    kept in the warehouse but the new rows: no temporary table per batch.
    """
    batch = _stamped(frame, run_id, now, load_id)
    first = batch.sort(_ORDER, maintain_order=True).unique(
        subset=_PAIR, keep="first", maintain_order=True
    )
    new = _not_landed(wh, table, first)
    wh.load_frame(table, new)
    return new.group_by("source_file").agg(pl.len().cast(pl.Int64).alias("loaded"))


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
    kept"): all the codings of the first parent, none of a later copy's. Children without a
    parent table (Medication resources) dedup on themselves.
    """
    table = f"raw.{schema.raw_table(feed, schema.CODINGS)}"
    parent = f"raw.{schema.raw_table(feed, entity)}" if entity in schema.RAW_COLUMNS else table
    batch = _stamped(frame, run_id, now, load_id)
    group = ["entity", *_PAIR]
    first_parent = (
        batch.sort(_ORDER, maintain_order=True)
        .unique(subset=group, keep="first", maintain_order=True)
        .select([*group, *_ORDER])
    )
    kept = batch.join(first_parent, on=[*group, *_ORDER], how="semi", nulls_equal=True)
    same_entity = ("", ()) if parent != table else (f" and t.entity = {wh.param}", (entity,))
    wh.load_frame(table, _not_landed(wh, parent, kept, *same_entity))


def _concat_conformed(entity: str, frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The batch's frames of one entity as one frame of the raw contract (the parse step
    conformed each already: they concatenate as they are, checked once; frames that differ
    are conformed one by one)."""
    try:
        return schema.conform(entity, pl.concat(frames, how="vertical"))
    except (pl.exceptions.SchemaError, pl.exceptions.ShapeError):
        return pl.concat([schema.conform(entity, f) for f in frames], how="vertical")


def _latest_effective(frame: pl.DataFrame) -> datetime | None:
    if "effective_at" in frame.columns and frame.height:
        value = frame.get_column("effective_at").max()
        if isinstance(value, datetime):
            return value
    return None


@dataclass
class _Tally:
    """One file's numbers over its parts (a large NDJSON or CSV file is parsed in several)."""

    digest: str
    size: int
    path: Path | None = None
    records_in: int = 0
    rows_out: int = 0
    loaded: int = 0
    quarantined: int = 0
    ignored: int = 0
    file_scope: bool = False
    parts: int = 0
    all_not_json: bool = True  # every part: no row, nothing ignored, only non-JSON lines
    held: list[pl.DataFrame] = field(default_factory=list)  # quarantine of an unfinished file


@dataclass
class _Batch:
    """Parsed files (or parts) waiting to be written; flushed every ``FLUSH_ROWS`` rows.

    ``tallies`` outlive a flush: a file's registry row is written with its last part."""

    parts: list[tuple[ParsedFile, bool]] = field(default_factory=list)
    tallies: dict[str, _Tally] = field(default_factory=dict)
    rows: int = 0

    def add(
        self,
        parsed: ParsedFile,
        digest: str,
        size: int,
        last: bool = True,
        path: Path | None = None,
    ) -> None:
        self.tallies.setdefault(parsed.source_file, _Tally(digest, size, path))
        self.parts.append((parsed, last))
        self.rows += parsed.rows_out + parsed.quarantined.height


def _flush(wh: Warehouse, batch: _Batch, counts: FeedCounts, run_id: str, load_id: int) -> None:
    """Write one batch: new raw rows, quarantine rows, registry rows of the files it
    completes (inside the feed's transaction). Rows of earlier flushes are already in the
    tables, so the dedup in ``_insert_new_rows`` also catches duplicates across flushes."""
    if not batch.parts:
        return
    feed = counts.feed
    now = datetime.now(UTC).replace(tzinfo=None)
    parsed_files = [p for p, _ in batch.parts]
    codings = [p.codings for p in parsed_files if p.codings.height]
    all_codings = pl.concat(codings, how="vertical") if codings else None
    if all_codings is not None:
        table = f"raw.{schema.raw_table(feed, schema.CODINGS)}"
        for (entity,), part in all_codings.partition_by("entity", as_dict=True).items():
            # child rows before their parents: a parent landed earlier skips its children
            _insert_new_codings(wh, feed, str(entity), part, run_id, now, load_id)
        counts.loaded_by_table.setdefault(table, 0)
    for entity in schema.ENTITIES:
        frames = [
            p.tables[entity] for p in parsed_files if entity in p.tables and p.tables[entity].height
        ]
        if not frames:
            continue
        frame = _concat_conformed(entity, frames)
        table = f"raw.{schema.raw_table(feed, entity)}"
        loaded = _insert_new_rows(wh, table, frame, run_id, now, load_id)
        n_loaded = int(loaded.get_column("loaded").sum()) if loaded.height else 0
        counts.loaded += n_loaded
        counts.duplicates_skipped += frame.height - n_loaded
        counts.loaded_by_table[table] = counts.loaded_by_table.get(table, 0) + n_loaded
        for source_file, n in loaded.iter_rows():
            batch.tallies[source_file].loaded += n
        latest = _latest_effective(frame)
        if latest and (counts.latest_record_at is None or latest > counts.latest_record_at):
            counts.latest_record_at = latest

    quarantine: list[pl.DataFrame] = []
    registry_rows = []
    for parsed, last in batch.parts:
        tally = batch.tallies[parsed.source_file]
        tally.parts += 1
        tally.records_in += parsed.records_in
        tally.rows_out += parsed.rows_out
        tally.ignored += sum(parsed.ignored.values())
        if not (last and tally.parts == 1):  # a part of a file parsed in parts
            tally.all_not_json = tally.all_not_json and all_lines_not_json(parsed)
        if parsed.quarantined.height:
            tally.held.append(parsed.quarantined)
        if not last:
            continue
        del batch.tallies[parsed.source_file]
        if tally.parts > 1 and feed == "fhir":  # a CSV file's verdicts come with its header
            _whole_file_rules(tally, parsed)
        q = pl.concat(tally.held, how="vertical") if tally.held else None
        if q is not None:
            quarantine.append(q)
            tally.quarantined = q.height
            tally.file_scope = bool((q.get_column("scope") == "file").any())
        counts.files_new += 1
        counts.files_quarantined += int(tally.file_scope)
        counts.records_in += tally.records_in
        counts.quarantined += tally.quarantined
        counts.ignored += tally.ignored
        registry_rows.append(
            {
                "content_hash": tally.digest,
                "feed": feed,
                "source_file": parsed.source_file,
                "size_bytes": tally.size,
                "run_id": run_id,
                "ingested_at": now,
                "records_in": tally.records_in,
                "loaded": tally.loaded,
                "duplicates_skipped": tally.rows_out - tally.loaded,
                "quarantined": tally.quarantined,
                "ignored": tally.ignored,
            }
        )
    if quarantine:
        # NUL cannot be stored in PostgreSQL text: keep payloads identical on both engines
        q = pl.concat(quarantine, how="vertical").with_columns(
            pl.col("raw_payload").str.replace_all("\x00", "\ufffd", literal=True),
            pl.lit(run_id).alias("run_id"),
            pl.lit(now).alias("quarantined_at"),
        )
        wh.load_frame(QUARANTINE_TABLE, q.select(list(QUARANTINE_TABLE_COLUMNS)))
    if registry_rows:
        wh.load_frame(REGISTRY_TABLE, pl.DataFrame(registry_rows, schema=REGISTRY_COLUMNS))
    batch.parts.clear()
    batch.rows = 0


def _whole_file_rules(tally: _Tally, last: ParsedFile) -> None:
    """A file parsed in parts gets the verdicts the one-file parser gives a whole file: only
    blank lines is "file is empty"; no line that is JSON is one file-scope row (its payload
    the file's first bytes, as the one-file parser stores them)."""
    from trialscreen.feeds import bounded
    from trialscreen.feeds.fhir.read import PAYLOAD_LIMIT, _file_quarantine, _FileError

    if tally.records_in == 0 and tally.ignored == 0:
        reason = "file is empty"
    elif tally.rows_out == 0 and tally.all_not_json:
        reason = NOT_JSON
    else:
        return
    # the file's first bytes as the parser read them (a gzip's decompressed, as parse_fhir_file
    # keeps them)
    head = bounded.head(tally.path, PAYLOAD_LIMIT) if tally.path is not None else b""
    shell = ParsedFile(feed=last.feed, source_file=last.source_file)
    replaced = _file_quarantine(shell, _FileError(reason, head))
    tally.held = [replaced.quarantined]
    tally.records_in = replaced.records_in
    tally.ignored = 0
