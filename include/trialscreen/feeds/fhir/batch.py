"""The batching engine: records grouped by resource type, decoded and mapped in chunks.

``_Accumulator`` runs one file's groups (``parse_fhir_file``); ``_BatchRun`` runs many small
files' groups together and slices each file's rows back out (``parse_fhir_files``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.fhir.decode import _LINEAGE_RAW, _S, _decode_group
from trialscreen.feeds.fhir.read import (
    FEED,
    _file_quarantine,
    _FileError,
    _read_bytes,
    medication_coding_rows,
)
from trialscreen.feeds.fhir.resources import (
    MAPPERS,
    USED_TYPES,
    _batch_resolver,
    _dict_resolver,
    _record_id,
    apply,
)

# Records decoded per polars batch. Measured on a 130 MB Observation NDJSON: one batch ran
# at 32 MB/s, 10,000-line batches at 128 MB/s, 2,000-line batches at 186 MB/s (large
# allocations are what costs; small batches reuse memory).
CHUNK_RECORDS = 2000
# The decoded chunks of a group are mapped together, in one query per this many records: the
# mapping query costs a fixed ~25 ms to plan and start whatever its size, so 2,000-record
# chunks spent most of a part's time there (80,000 Observations of the 1M population: 1.7 s
# mapped 2,000 at a time, 0.45 s 20,000 at a time; docs/decisions.md "FHIR: decode small,
# map large"). A part (``ingest.parse.PART_BYTES``) or a batch of bundles bounds it too.
MAP_RECORDS = 32_000


def quarantine_in_file_order(quarantine: list[dict[str, object]]) -> pl.DataFrame:
    """A file's record rejects as its quarantine frame, by position: the same order however
    its records were chunked, mapped or batched with other files'."""
    rows = sorted(quarantine, key=lambda row: _position_key(row["source_position"]))
    return schema.quarantine_frame(rows)


def _position_key(position: object) -> tuple[bool, int]:
    return (position is not None, position if isinstance(position, int) else 0)


def _nothing_was_json(acc: _Accumulator) -> bool:
    """A file where every record failed as non-JSON is one bad file, not N bad records."""
    return (
        not any(acc.out.values())
        and not acc.ignored
        and bool(acc.quarantine)
        and all(q["error"] == "line is not valid JSON" for q in acc.quarantine)
    )


class _Decoded:
    """A group's decoded chunks, mapped together once ``MAP_RECORDS`` have gathered."""

    def __init__(self, map_frame: Callable[[str, pl.DataFrame], None], rtype: str | None):
        self.map_frame = map_frame
        self.rtype = rtype
        self.frames: list[pl.DataFrame] = []
        self.rows = 0

    def add(self, frame: pl.DataFrame | None) -> None:
        if frame is None:
            return
        self.frames.append(frame)
        self.rows += frame.height
        if self.rows >= MAP_RECORDS:
            self.flush()

    def flush(self) -> None:
        if self.frames and self.rtype is not None:
            self.map_frame(self.rtype, pl.concat(self.frames, rechunk=False))
        self.frames, self.rows = [], 0


@dataclass
class _Accumulator:
    """Records grouped by the resource type used to decode them, and what came out."""

    source_file: str
    groups: dict[str | None, list[tuple[str, int, str]]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # bundle fullUrl -> "Type/id"
    ignored: Counter[str] = field(default_factory=Counter)
    quarantine: list[dict[str, object]] = field(default_factory=list)
    out: dict[str, list[pl.DataFrame]] = field(
        default_factory=lambda: {e: [] for e in schema.ENTITIES}
    )
    # child rows: every coding of the mapped records, and the Medication resources' codings
    codings: list[pl.DataFrame] = field(default_factory=list)
    medication_rows: list[dict[str, object]] = field(default_factory=list)

    def medication(self, res: dict[str, object], pos: int, digest: str) -> None:
        self.medication_rows += medication_coding_rows(res, self.source_file, pos, digest)

    def coding_frame(self) -> pl.DataFrame:
        frames = [*self.codings]
        if self.medication_rows:
            frames.append(
                pl.DataFrame(self.medication_rows, schema=schema.CODING_COLUMNS, orient="row")
            )
        return pl.concat(frames) if frames else schema.empty_frame(schema.CODINGS)

    def reject(
        self, position: int | None, error: str, payload: str, rec: int | None = None
    ) -> None:
        self.quarantine.append(
            {
                "feed": FEED,
                "scope": "record",
                "source_file": self.source_file,
                "source_position": position,
                "error": error,
                "raw_payload": payload,
            }
        )

    def run(self) -> None:
        """Decode each group in chunks (lines of another type are re-routed to its group),
        then map its decoded records ``MAP_RECORDS`` at a time."""
        while self.groups:
            rtype, records = self.groups.popitem()
            decoded = _Decoded(self._map, rtype)
            for start in range(0, len(records), CHUNK_RECORDS):
                chunk = records[start : start + CHUNK_RECORDS]
                raw = pl.DataFrame(
                    {
                        "line": [r[0] for r in chunk],
                        "source_position": [r[1] for r in chunk],
                        "record_hash": [r[2] for r in chunk],
                    },
                    schema=_LINEAGE_RAW,
                )
                decoded.add(self._route(rtype, _decode_group(raw, rtype, self)))
            decoded.flush()

    def _route(self, rtype: str | None, frame: pl.DataFrame) -> pl.DataFrame | None:
        """The records of ``rtype`` (None: none); the others are re-routed."""
        found = frame.get_column("resourceType")
        if rtype is not None and (found == rtype).all():  # the usual case: no split needed
            return frame
        mine = frame.filter(found == rtype) if rtype else frame.clear()
        others = frame.filter(found.is_null() | (found != rtype)) if rtype else frame
        for row in others.select("resourceType", "line", "source_position", "record_hash").rows():
            self.reroute(*row)
        return mine if mine.height and rtype is not None else None

    def reroute(self, rtype: str | None, line: str, pos: int, digest: str) -> None:
        if not rtype:
            self.reject(pos, "resource has no resourceType", line)
        elif rtype in USED_TYPES:
            self.groups.setdefault(rtype, []).append((line, pos, digest))
        else:
            self.ignored[rtype] += 1
            if rtype == "Medication":  # a Medication NDJSON file
                try:
                    res = orjson.loads(line)
                except orjson.JSONDecodeError:
                    return
                if isinstance(res, dict):
                    self.medication(res, pos, digest)

    def _map(self, rtype: str, frame: pl.DataFrame) -> None:
        """One lazy query per type: computed columns, then ``_error``, then the split."""
        entity = USED_TYPES[rtype]
        mapping = MAPPERS[entity](_dict_resolver(self.refs))
        lineage = frame.lazy().with_columns(_record_id(rtype), source_file=pl.lit(self.source_file))
        mapped = apply(mapping, lineage)
        if mapped.get_column("_error").null_count() < mapped.height:
            bad = mapped.filter(pl.col("_error").is_not_null())
            for pos, error, line in bad.select("source_position", "_error", "line").rows():
                self.reject(pos, error, line)
            mapped = mapped.filter(pl.col("_error").is_null())
        if mapped.height:
            self.out[entity].append(schema.conform(entity, mapped))
            if schema.CODING_LIST in mapped.columns:
                self.codings.append(schema.split_codings(entity, mapped))


# ---------------------------------------------------------------------------------------
# Many small files at once (parse_fhir_files)


class _Reroute(Exception):
    """A batched record decoded as another resource type. Bundle entries are grouped by their
    own resourceType so this does not happen; if it did, the batch is redone file by file."""


@dataclass
class _Slot:
    path: Path
    result: ParsedFile
    acc: _Accumulator | None  # None: the file already failed as a whole (file quarantine)


_BATCH_RAW = {**_LINEAGE_RAW, "_rec": pl.Int64(), "_file": pl.Int64(), "source_file": _S}


class _BatchRun:
    """One decode + mapping query per type and chunk across files, then per-file results.

    Every record gets a batch number ``_rec`` in one-file order (file, then the order its
    groups run in ``_Accumulator.run`` — last-in first-out — then position in the group), so
    sorting output rows by ``_rec`` and slicing by ``_file`` gives each file exactly the
    rows, in the order, that ``parse_fhir_file`` produces. A file's rejects are put in
    position order, as ``parse_fhir_file`` puts them (``quarantine_in_file_order``).
    """

    def __init__(self, slots: list[_Slot]) -> None:
        self.slots = slots
        self.sources = [slot.result.source_file for slot in slots]
        self.groups: dict[str, list[tuple[str, int, str, int]]] = {}
        self.rec_file: list[int] = []
        self.rejects: list[list[dict[str, object]]] = [[] for _ in slots]
        self.out: dict[str, list[pl.DataFrame]] = {e: [] for e in schema.ENTITIES}
        self.codings: list[pl.DataFrame] = []
        keys: list[str] = []
        targets: list[str] = []
        for fi, slot in enumerate(slots):
            if slot.acc is None:
                continue
            for url, target in slot.acc.refs.items():
                keys.append(f"{fi}\x00{url}")
                targets.append(target)
            for rtype, records in reversed(slot.acc.groups.items()):
                if rtype is None:  # not produced for bundles; kept for completeness
                    raise _Reroute
                bucket = self.groups.setdefault(rtype, [])
                for line, pos, digest in records:
                    rec = len(self.rec_file)
                    self.rec_file.append(fi)
                    bucket.append((line, pos, digest, rec))
            slot.acc.groups = {}
        self.resolve = _batch_resolver(pl.Series(keys, dtype=_S), pl.Series(targets, dtype=_S))

    def reject(
        self, position: int | None, error: str, payload: str, rec: int | None = None
    ) -> None:
        assert rec is not None
        fi = self.rec_file[rec]
        row: dict[str, object] = {
            "feed": FEED,
            "scope": "record",
            "source_file": self.sources[fi],
            "source_position": position,
            "error": error,
            "raw_payload": payload,
        }
        self.rejects[fi].append(row)

    def reroute(self, rtype: str | None, line: str, pos: int, digest: str) -> None:
        raise _Reroute

    def run(self) -> None:
        for rtype, records in self.groups.items():
            decoded = _Decoded(self._map, rtype)
            for start in range(0, len(records), CHUNK_RECORDS):
                chunk = records[start : start + CHUNK_RECORDS]
                files = [self.rec_file[r[3]] for r in chunk]
                raw = pl.DataFrame(
                    {
                        "line": [r[0] for r in chunk],
                        "source_position": [r[1] for r in chunk],
                        "record_hash": [r[2] for r in chunk],
                        "_rec": [r[3] for r in chunk],
                        "_file": files,
                        "source_file": [self.sources[fi] for fi in files],
                    },
                    schema=_BATCH_RAW,
                )
                frame = _decode_group(raw, rtype, self)
                if not (frame.get_column("resourceType") == rtype).all():
                    raise _Reroute
                decoded.add(frame)
            decoded.flush()
        self.groups = {}
        self._finish()

    def _map(self, rtype: str, frame: pl.DataFrame) -> None:
        """``_Accumulator._map`` with per-record source_file and per-file references."""
        entity = USED_TYPES[rtype]
        mapping = MAPPERS[entity](self.resolve)
        mapped = apply(mapping, frame.lazy().with_columns(_record_id(rtype)))
        if mapped.get_column("_error").null_count() < mapped.height:
            bad = mapped.filter(pl.col("_error").is_not_null())
            for pos, error, line, rec in bad.select(
                "source_position", "_error", "line", "_rec"
            ).rows():
                self.reject(pos, error, line, rec)
            mapped = mapped.filter(pl.col("_error").is_null())
        if mapped.height:
            out = schema.conform(entity, mapped)
            self.out[entity].append(out.with_columns(mapped.select("_rec", "_file")))
            if schema.CODING_LIST in mapped.columns:
                self.codings.append(schema.split_codings(entity, mapped))

    def _finish(self) -> None:
        """Slice each entity's rows back per file; build each file's quarantine and counts."""
        bounds_of = pl.Series(range(len(self.slots) + 1), dtype=pl.Int64())
        for entity, frames in self.out.items():
            if not frames:
                continue
            rows = pl.concat(frames, rechunk=False)
            if len(frames) > 1:
                rows = rows.sort("_rec")
            bounds = rows.get_column("_file").search_sorted(bounds_of, side="left").to_list()
            rows = rows.drop("_rec", "_file")
            for fi, slot in enumerate(self.slots):
                if bounds[fi + 1] > bounds[fi]:
                    slot.result.tables[entity] = rows.slice(bounds[fi], bounds[fi + 1] - bounds[fi])
        # codings carry their own source_file: split them back per file by it
        codings = pl.concat(self.codings) if self.codings else None
        by_file = (
            codings.partition_by("source_file", as_dict=True, maintain_order=True)
            if codings is not None and codings.height
            else {}
        )
        for fi, slot in enumerate(self.slots):
            acc = slot.acc
            if acc is None:
                continue
            result = slot.result
            mine = by_file.get((result.source_file,))
            if mine is not None:
                acc.codings.append(mine)
            result.codings = acc.coding_frame()
            acc.quarantine += self.rejects[fi]
            if (
                not result.rows_out
                and not acc.ignored
                and acc.quarantine
                and all(q["error"] == "line is not valid JSON" for q in acc.quarantine)
            ):  # _nothing_was_json; cannot happen for re-serialized bundle entries
                data = _read_bytes(slot.path)
                slot.result = _file_quarantine(
                    result, _FileError("no line of the file is valid JSON", data)
                )
                continue
            result.quarantined = quarantine_in_file_order(acc.quarantine)
            result.ignored = dict(acc.ignored)
            result.records_in = result.rows_out + result.quarantined.height
