"""FHIR R4 feed parser: Bulk Data NDJSON and Bundles into the raw contract.

One file in, one ``ParsedFile`` out; nothing here touches the warehouse.

Why it is shaped this way:

* Parsing is one polars ``str.json_decode`` per resource type with an explicit struct dtype
  holding only the fields the pipeline reads (docs/specification.md#stack-notes: an explicit schema
  is ~7x faster than
  inference). Each resource is kept as its JSON text, so the same text feeds the quarantine
  payload and ``record_hash``.
* ``json_decode`` fails a whole batch on one bad line (not JSON, or a field of the wrong JSON
  type). The fast path decodes once; only when that fails do we prescreen lines with orjson
  and bisect the rest, so a clean file pays for a single decode.
* Bundles are read with orjson (we must walk entries and build the ``fullUrl`` map anyway);
  each used resource is re-serialized with sorted keys and goes through the same decode and
  mapping as NDJSON lines, so there is one field mapping, not two.
* Error texts name the resource type and field, never a value: payloads carry PHI.
* Small bundles are parsed together (``parse_fhir_files``): polars costs a fixed ~25 ms per
  file for the decode and mapping queries, which dwarfs a 24-resource bundle. Many files'
  records share one decode and one mapping query per type (each record carries its file and
  its bundle's fullUrl map is keyed by file), then each file's rows are sliced back out in
  the exact order the one-file parser produces.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from trialscreen.codesystems import ATC, ICD10CM, ICDO3, LOINC, RXNORM, SNOMED
from trialscreen.feeds import ParsedFile, bounded
from trialscreen.feeds.fhir.batch import (
    CHUNK_RECORDS,
    _Accumulator,
    _BatchRun,
    _nothing_was_json,
    _Reroute,
    _Slot,
    quarantine_in_file_order,
)
from trialscreen.feeds.fhir.decode import DTYPES
from trialscreen.feeds.fhir.read import (
    FEED,
    PAYLOAD_LIMIT,
    _collect_json,
    _collect_ndjson,
    _file_quarantine,
    _FileError,
    _is_ndjson,
    _ndjson_type,
    _new_result,
    _read_bytes,
)
from trialscreen.feeds.fhir.resources import MAPPERS, USED_TYPES, Mapping

__all__ = [
    "ATC",
    "BATCH_FILES",
    "BATCH_RECORDS",
    "CHUNK_RECORDS",
    "DTYPES",
    "FEED",
    "ICD10CM",
    "ICDO3",
    "LOINC",
    "MAPPERS",
    "PAYLOAD_LIMIT",
    "RXNORM",
    "SNOMED",
    "USED_TYPES",
    "Mapping",
    "all_lines_not_json",
    "is_fhir_file",
    "parse_fhir_part",
    "parse_fhir_file",
    "parse_fhir_files",
    "refused_fhir_file",
]

# parse_fhir_files: bundle/JSON files are collected until this many records or files, then
# decoded together and split back per file (bounds memory; results stream per batch).
BATCH_RECORDS = 20_000
BATCH_FILES = 1000


# ---------------------------------------------------------------------------------------
# Public API


def is_fhir_file(path: Path) -> bool:
    """True for names this parser owns: ``*.ndjson[.gz]`` and ``*.json[.gz]``."""
    name = Path(path).name.lower()
    return name.endswith((".ndjson", ".ndjson.gz", ".json", ".json.gz"))


def parse_fhir_file(path: Path, root: Path) -> ParsedFile:
    """Parse one FHIR file; never raises for bad content (it is quarantined instead)."""
    path = Path(path)
    result = _new_result(path, root)
    acc = _Accumulator(result.source_file)
    try:
        data = _read_bytes(path)
        if not data.strip():
            raise _FileError("file is empty", data)
        if _is_ndjson(path):
            _collect_ndjson(data, _ndjson_type(path), acc)
        else:
            _collect_json(data, acc)
    except _FileError as exc:
        return _file_quarantine(result, exc)
    acc.run()
    if _nothing_was_json(acc):
        return _file_quarantine(result, _FileError("no line of the file is valid JSON", data))
    return _finish(result, acc)


def parse_fhir_part(
    path: Path, root: Path, start: int, end: int, first_line: int, data: bytes | None = None
) -> ParsedFile:
    """The lines of an NDJSON file in bytes ``[start, end)`` (both at line starts;
    ``first_line`` is the number of the first), parsed as ``parse_fhir_file`` parses the
    whole file: the same rows, positions and record rejects for those lines. ``data``: those
    bytes when the caller read them (a part of a gzipped file, decompressed by the ingest
    process: a gzip cannot be entered in the middle); else they are read from ``path``.
    Either way every row and reject names ``path`` (relative to ``root``).

    A large file is parsed in parts so that memory follows the part, not the file. The
    whole-file rules stay with the caller: a file that cannot be opened is never split
    (``_FileError`` here becomes a file quarantine), and "no line of the file is valid JSON"
    is decided over all parts (``all_lines_not_json``)."""
    path = Path(path)
    result = _new_result(path, root)
    acc = _Accumulator(result.source_file)
    if data is None:
        try:
            with bounded.open_regular(path) as handle:
                handle.seek(start)
                data = handle.read(end - start)
        except bounded.RefusedInput as exc:
            return _file_quarantine(result, _FileError(exc.reason, exc.partial))
    _collect_ndjson(data, _ndjson_type(path), acc, first_line)
    del data
    acc.run()
    return _finish(result, acc)


def refused_fhir_file(path: Path, root: Path, reason: str, payload: bytes) -> ParsedFile:
    """The result ``parse_fhir_file`` gives a file it refuses: one file-scope row with
    ``reason`` and the first 64 KiB of ``payload`` (``refusal_payload``)."""
    return _file_quarantine(_new_result(Path(path), root), _FileError(reason, payload))


def all_lines_not_json(parsed: ParsedFile) -> bool:
    """``_nothing_was_json`` on a part's result: no row, nothing ignored, and every reject
    is a line that is not JSON."""
    q = parsed.quarantined
    return (
        parsed.rows_out == 0
        and not parsed.ignored
        and q.height > 0
        and bool((q.get_column("error") == "line is not valid JSON").all())
    )


def parse_fhir_files(paths: Sequence[Path], root: Path) -> Iterator[ParsedFile]:
    """``parse_fhir_file`` for each path, in order, with small files decoded together.

    Each yielded ``ParsedFile`` is identical to ``parse_fhir_file(path, root)`` (same rows in
    the same order, same quarantine rows, counts and ignored types). Bundle and single
    resource JSON files are batched (``BATCH_RECORDS`` / ``BATCH_FILES``); NDJSON files are
    already large and keep the one-file path.
    """
    batch = _Batch(Path(root))
    for path in map(Path, paths):
        if _is_ndjson(path):
            yield from batch.flush()
            yield parse_fhir_file(path, root)
            continue
        batch.add(path)
        if batch.records >= BATCH_RECORDS or len(batch.slots) >= BATCH_FILES:
            yield from batch.flush()
    yield from batch.flush()


class _Batch:
    """Bundle/JSON files read and walked, waiting to be decoded together."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.slots: list[_Slot] = []
        self.records = 0

    def add(self, path: Path) -> None:
        """Read and walk one file now (the same steps as ``parse_fhir_file``)."""
        result = _new_result(path, self.root)
        acc = _Accumulator(result.source_file)
        try:
            data = _read_bytes(path)
            if not data.strip():
                raise _FileError("file is empty", data)
            _collect_json(data, acc)
        except _FileError as exc:
            self.slots.append(_Slot(path, _file_quarantine(result, exc), None))
            return
        self.slots.append(_Slot(path, result, acc))
        self.records += sum(map(len, acc.groups.values()))

    def flush(self) -> list[ParsedFile]:
        slots, self.slots, self.records = self.slots, [], 0
        if not slots:
            return []
        try:
            _BatchRun(slots).run()
        except _Reroute:
            return [parse_fhir_file(slot.path, self.root) for slot in slots]
        return [slot.result for slot in slots]


def _finish(result: ParsedFile, acc: _Accumulator) -> ParsedFile:
    """The accumulated frames, rejects, ignored counts and codings moved into ``result``."""
    for entity, frames in acc.out.items():
        if frames:
            result.tables[entity] = pl.concat(frames, rechunk=False)
    result.quarantined = quarantine_in_file_order(acc.quarantine)
    result.ignored = dict(acc.ignored)
    result.records_in = result.rows_out + result.quarantined.height
    result.codings = acc.coding_frame()
    return result
