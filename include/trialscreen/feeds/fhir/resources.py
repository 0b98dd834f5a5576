"""FHIR R4 feed parser: Bulk Data NDJSON and Bundles into the raw contract.

One file in, one ``ParsedFile`` out; nothing here touches the warehouse.

Why it is shaped this way:

* Parsing is one polars ``str.json_decode`` per resource type with an explicit struct dtype
  holding only the fields the pipeline reads (SPEC §1: an explicit schema is ~7x faster than
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

import gzip
import hashlib
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson
import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile

FEED = "fhir"
PAYLOAD_LIMIT = 64 * 1024
# Records decoded per polars batch. Measured on a 130 MB Observation NDJSON: one batch ran
# at 32 MB/s, 10,000-line batches at 128 MB/s, 2,000-line batches at 186 MB/s (large
# allocations are what costs; small batches reuse memory).
CHUNK_RECORDS = 2000
# parse_fhir_files: bundle/JSON files are collected until this many records or files, then
# decoded together and split back per file (bounds memory; results stream per batch).
BATCH_RECORDS = 20_000
BATCH_FILES = 200

LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"

# Resource types the pipeline uses, and the raw entity each one lands in.
USED_TYPES: dict[str, str] = {
    "Patient": "patients",
    "Observation": "observations",
    "Condition": "conditions",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
    "MedicationAdministration": "medications",
}

_NDJSON_NAME = re.compile(r"^([A-Z][A-Za-z]+)(?:\.\d+)?\.ndjson(?:\.gz)?$")

# ---------------------------------------------------------------------------------------
# Decode dtypes: only the fields we map. Unknown JSON keys are skipped by polars.

_S = pl.String()
_CODING = pl.Struct({"system": _S, "code": _S, "display": _S})
_CC = pl.Struct({"coding": pl.List(_CODING), "text": _S})
_REF = pl.Struct({"reference": _S, "display": _S})
_PERIOD = pl.Struct({"start": _S, "end": _S})
_QTY = pl.Struct({"value": pl.Float64(), "comparator": _S, "unit": _S, "system": _S, "code": _S})
_SIMPLE_QTY = pl.Struct({"value": pl.Float64()})
_HEAD: dict[str, pl.DataType] = {"resourceType": _S, "id": _S}
_MED_FIELDS: dict[str, pl.DataType] = {
    **_HEAD,
    "status": _S,
    "medicationCodeableConcept": _CC,
    "medicationReference": _REF,
    "subject": _REF,
    "patient": _REF,
    "authoredOn": _S,
    "effectiveDateTime": _S,
    "effectivePeriod": _PERIOD,
}

DTYPES: dict[str | None, pl.Struct] = {
    None: pl.Struct(_HEAD),  # unknown file type: read the header, route by resourceType
    "Patient": pl.Struct(
        {
            **_HEAD,
            "identifier": pl.List(pl.Struct({"type": _CC, "system": _S, "value": _S})),
            "name": pl.List(pl.Struct({"family": _S, "given": pl.List(_S), "text": _S})),
            "gender": _S,
            "birthDate": _S,
            "deceasedDateTime": _S,
        }
    ),
    "Observation": pl.Struct(
        {
            **_HEAD,
            "status": _S,
            "category": pl.List(_CC),
            "code": _CC,
            "subject": _REF,
            "patient": _REF,
            "effectiveDateTime": _S,
            "effectivePeriod": _PERIOD,
            "issued": _S,
            "valueQuantity": _QTY,
            "valueCodeableConcept": _CC,
            "valueString": _S,
            "valueInteger": pl.Int64(),
            "referenceRange": pl.List(
                pl.Struct({"low": _SIMPLE_QTY, "high": _SIMPLE_QTY, "text": _S})
            ),
            "interpretation": pl.List(_CC),
            "basedOn": pl.List(_REF),
            "method": _CC,
            "bodySite": _CC,
        }
    ),
    "Condition": pl.Struct(
        {
            **_HEAD,
            "clinicalStatus": _CC,
            "verificationStatus": _CC,
            "code": _CC,
            "subject": _REF,
            "patient": _REF,
            "onsetDateTime": _S,
            "onsetPeriod": _PERIOD,
            "recordedDate": _S,
            "abatementDateTime": _S,
        }
    ),
    "MedicationRequest": pl.Struct(_MED_FIELDS),
    "MedicationStatement": pl.Struct(_MED_FIELDS),
    "MedicationAdministration": pl.Struct(_MED_FIELDS),
}

_LINEAGE_RAW = {"line": _S, "source_position": pl.Int64(), "record_hash": _S}


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
    for entity, frames in acc.out.items():
        if frames:
            result.tables[entity] = pl.concat(frames, rechunk=False)
    result.quarantined = _quarantine(acc.quarantine)
    result.ignored = dict(acc.ignored)
    result.records_in = result.rows_out + result.quarantined.height
    return result


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


# Empty frames are cloned from templates: building one from a schema costs ~0.1 ms, which
# adds up over five frames for each of thousands of small files.
_EMPTY = {e: schema.empty_frame(e) for e in schema.ENTITIES}
_EMPTY_QUARANTINE = schema.quarantine_frame([])


def _new_result(path: Path, root: Path) -> ParsedFile:
    result = ParsedFile(
        feed=FEED,
        source_file=path.relative_to(root).as_posix(),
        quarantined=_EMPTY_QUARANTINE.clone(),
    )
    result.tables = {e: frame.clone() for e, frame in _EMPTY.items()}  # always all four
    return result


def _quarantine(rows: list[dict[str, object]]) -> pl.DataFrame:
    return schema.quarantine_frame(rows) if rows else _EMPTY_QUARANTINE.clone()


# ---------------------------------------------------------------------------------------
# Reading files


class _FileError(Exception):
    """The whole file is unreadable; carries a PHI-free reason and what could be read."""

    def __init__(self, reason: str, payload: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payload = payload


def _nothing_was_json(acc: _Accumulator) -> bool:
    """A file where every record failed as non-JSON is one bad file, not N bad records."""
    return (
        not any(acc.out.values())
        and not acc.ignored
        and bool(acc.quarantine)
        and all(q["error"] == "line is not valid JSON" for q in acc.quarantine)
    )


def _is_ndjson(path: Path) -> bool:
    return path.name.lower().endswith((".ndjson", ".ndjson.gz"))


def _ndjson_type(path: Path) -> str | None:
    """Bulk Data names the resource type in the file name; None when it does not."""
    m = _NDJSON_NAME.match(path.name)
    return m.group(1) if m else None


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not path.name.lower().endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        reason = (
            "gzip stream is truncated" if isinstance(exc, EOFError) else "not a valid gzip file"
        )
        raise _FileError(reason, _partial_gunzip(raw)) from None


def _partial_gunzip(raw: bytes) -> bytes:
    """What a broken gzip still yields (for the payload), else the raw bytes."""
    try:
        out = zlib.decompressobj(wbits=47).decompress(raw, PAYLOAD_LIMIT)
    except zlib.error:
        return raw[:PAYLOAD_LIMIT]
    return out or raw[:PAYLOAD_LIMIT]


def _payload(data: bytes) -> str:
    """First 64 KiB as text; NUL is replaced because PostgreSQL text cannot hold it."""
    return data[:PAYLOAD_LIMIT].decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _file_quarantine(result: ParsedFile, exc: _FileError) -> ParsedFile:
    row: dict[str, object] = {
        "feed": FEED,
        "scope": "file",
        "source_file": result.source_file,
        "source_position": None,
        "error": exc.reason,
        "raw_payload": _payload(exc.payload),
    }
    result.quarantined = schema.quarantine_frame([row])
    result.records_in = 1
    return result


# ---------------------------------------------------------------------------------------
# Collecting records: every record becomes (JSON text, position, sha256) in a type group.


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

    def reject(
        self, position: int | None, error: str, payload: str, rec: int | None = None, stage: int = 0
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
        """Decode each group in chunks; lines of another type are re-routed to its group."""
        while self.groups:
            rtype, records = self.groups.popitem()
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
                self._route(rtype, _decode_group(raw, rtype, self))

    def _route(self, rtype: str | None, frame: pl.DataFrame) -> None:
        found = frame.get_column("resourceType")
        if rtype is not None and (found == rtype).all():  # the usual case: no split needed
            self._map(rtype, frame)
            return
        mine = frame.filter(found == rtype) if rtype else frame.clear()
        others = frame.filter(found.is_null() | (found != rtype)) if rtype else frame
        for row in others.select("resourceType", "line", "source_position", "record_hash").rows():
            self.reroute(*row)
        if mine.height and rtype is not None:
            self._map(rtype, mine)

    def reroute(self, rtype: str | None, line: str, pos: int, digest: str) -> None:
        if not rtype:
            self.reject(pos, "resource has no resourceType", line)
        elif rtype in USED_TYPES:
            self.groups.setdefault(rtype, []).append((line, pos, digest))
        else:
            self.ignored[rtype] += 1

    def _map(self, rtype: str, frame: pl.DataFrame) -> None:
        """One lazy query per type: computed columns, then ``_error``, then the split."""
        entity = USED_TYPES[rtype]
        mapping = MAPPERS[entity](_dict_resolver(self.refs))
        mapped = (
            frame.lazy()
            .with_columns(_record_id(rtype), source_file=pl.lit(self.source_file))
            .with_columns(mapping.columns)
            .with_columns(_error_column(mapping.checks))
            .collect()
        )
        if mapped.get_column("_error").null_count() < mapped.height:
            bad = mapped.filter(pl.col("_error").is_not_null())
            for pos, error, line in bad.select("source_position", "_error", "line").rows():
                self.reject(pos, error, line)
            mapped = mapped.filter(pl.col("_error").is_null())
        if mapped.height:
            self.out[entity].append(schema.conform(entity, mapped))


class _Sink(Protocol):
    """Where decoding sends rejected and re-routed records: one file, or a batch of files."""

    def reject(
        self, position: int | None, error: str, payload: str, rec: int | None = None, stage: int = 0
    ) -> None: ...

    def reroute(self, rtype: str | None, line: str, pos: int, digest: str) -> None: ...


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


_BATCH_RAW = {**_LINEAGE_RAW, "_rec": pl.Int64(), "_file": pl.Int64(), "source_file": _S}


class _BatchRun:
    """One decode + mapping query per type and chunk across files, then per-file results.

    Every record gets a batch number ``_rec`` in one-file order (file, then the order its
    groups run in ``_Accumulator.run`` — last-in first-out — then position in the group), so
    sorting output rows by ``_rec`` and slicing by ``_file`` gives each file exactly the
    rows, in the order, that ``parse_fhir_file`` produces. Rejects get a sort key with the
    same one-file order: (group run order, 2000-record chunk, stage, ``_rec``).
    """

    def __init__(self, slots: list[_Slot]) -> None:
        self.slots = slots
        self.sources = [slot.result.source_file for slot in slots]
        self.groups: dict[str, list[tuple[str, int, str, int]]] = {}
        self.rec_file: list[int] = []
        self.rec_order: list[tuple[int, int]] = []  # per record: (group run order, chunk)
        self.rejects: list[list[tuple[tuple[int, ...], dict[str, object]]]] = [[] for _ in slots]
        self.out: dict[str, list[pl.DataFrame]] = {e: [] for e in schema.ENTITIES}
        keys: list[str] = []
        targets: list[str] = []
        for fi, slot in enumerate(slots):
            if slot.acc is None:
                continue
            for url, target in slot.acc.refs.items():
                keys.append(f"{fi}\x00{url}")
                targets.append(target)
            for rank, (rtype, records) in enumerate(reversed(slot.acc.groups.items())):
                if rtype is None:  # not produced for bundles; kept for completeness
                    raise _Reroute
                bucket = self.groups.setdefault(rtype, [])
                for i, (line, pos, digest) in enumerate(records):
                    rec = len(self.rec_file)
                    self.rec_file.append(fi)
                    self.rec_order.append((rank, i // CHUNK_RECORDS))
                    bucket.append((line, pos, digest, rec))
            slot.acc.groups = {}
        self.resolve = _batch_resolver(pl.Series(keys, dtype=_S), pl.Series(targets, dtype=_S))

    def reject(
        self, position: int | None, error: str, payload: str, rec: int | None = None, stage: int = 0
    ) -> None:
        assert rec is not None
        fi = self.rec_file[rec]
        rank, chunk = self.rec_order[rec]
        row: dict[str, object] = {
            "feed": FEED,
            "scope": "record",
            "source_file": self.sources[fi],
            "source_position": position,
            "error": error,
            "raw_payload": payload,
        }
        self.rejects[fi].append(((rank, chunk, stage, rec), row))

    def reroute(self, rtype: str | None, line: str, pos: int, digest: str) -> None:
        raise _Reroute

    def run(self) -> None:
        for rtype, records in self.groups.items():
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
                self._map(rtype, frame)
        self.groups = {}
        self._finish()

    def _map(self, rtype: str, frame: pl.DataFrame) -> None:
        """``_Accumulator._map`` with per-record source_file and per-file references."""
        entity = USED_TYPES[rtype]
        mapping = MAPPERS[entity](self.resolve)
        mapped = (
            frame.lazy()
            .with_columns(_record_id(rtype))
            .with_columns(mapping.columns)
            .with_columns(_error_column(mapping.checks))
            .collect()
        )
        if mapped.get_column("_error").null_count() < mapped.height:
            bad = mapped.filter(pl.col("_error").is_not_null())
            for pos, error, line, rec in bad.select(
                "source_position", "_error", "line", "_rec"
            ).rows():
                self.reject(pos, error, line, rec, stage=2)
            mapped = mapped.filter(pl.col("_error").is_null())
        if mapped.height:
            out = schema.conform(entity, mapped)
            self.out[entity].append(out.with_columns(mapped.select("_rec", "_file")))

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
        for fi, slot in enumerate(self.slots):
            acc = slot.acc
            if acc is None:
                continue
            result = slot.result
            acc.quarantine += [row for _, row in sorted(self.rejects[fi], key=lambda kv: kv[0])]
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
            result.quarantined = _quarantine(acc.quarantine)
            result.ignored = dict(acc.ignored)
            result.records_in = result.rows_out + result.quarantined.height


def _collect_ndjson(data: bytes, rtype: str | None, acc: _Accumulator) -> None:
    """One resource per line; positions are 1-based line numbers; blank lines are skipped."""
    records = [
        (line.decode("utf-8", errors="replace"), n, hashlib.sha256(line).hexdigest())
        for n, line in enumerate(data.splitlines(), 1)
        if line.strip()
    ]
    acc.groups[rtype if rtype in USED_TYPES else None] = records


def _collect_json(data: bytes, acc: _Accumulator) -> None:
    """A Bundle (any type; its entries are walked) or a single resource."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _FileError("file is not valid JSON", data) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise _FileError("file is not a FHIR resource or Bundle (no resourceType)", data)
    if doc["resourceType"] != "Bundle":
        _collect_resource(doc, 1, None, acc)
        return
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise _FileError("Bundle.entry is not a list", data)
    for pos, entry in enumerate(entries, 1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            acc.ignored["Bundle.entry without resource"] += 1
            continue
        full_url = entry.get("fullUrl")
        _collect_resource(resource, pos, full_url if isinstance(full_url, str) else None, acc)


def _collect_resource(res: object, pos: int, full_url: str | None, acc: _Accumulator) -> None:
    rtype = res.get("resourceType") if isinstance(res, dict) else None
    if not isinstance(rtype, str) or not rtype:
        acc.reject(pos, "bundle entry resource has no resourceType", _dump_any(res))
        return
    assert isinstance(res, dict)
    rid = res.get("id")
    if full_url and isinstance(rid, str):
        acc.refs[full_url] = f"{rtype}/{rid}"
    if rtype not in USED_TYPES:
        acc.ignored[rtype] += 1
        return
    text = orjson.dumps(res, option=orjson.OPT_SORT_KEYS)
    acc.groups.setdefault(rtype, []).append((text.decode(), pos, hashlib.sha256(text).hexdigest()))


def _dump_any(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# ---------------------------------------------------------------------------------------
# Decoding: one json_decode when clean; prescreen + bisection when a batch fails.


def _decode_group(raw: pl.DataFrame, rtype: str | None, acc: _Sink) -> pl.DataFrame:
    """Decoded fields plus lineage for the lines that fit ``DTYPES[rtype]``.

    Lines that do not are quarantined here (with a specific reason) or re-routed to the
    group of their own resourceType.
    """
    dtype = DTYPES[rtype]
    try:
        decoded = raw.get_column("line").str.json_decode(dtype)
    except pl.exceptions.ComputeError:
        keep = _good_rows(raw, rtype, dtype, acc)
        raw = raw.filter(keep)
        decoded = raw.get_column("line").str.json_decode(dtype)
    frame = pl.concat([raw, decoded.struct.unnest()], how="horizontal")
    if not decoded.has_nulls():
        return frame
    not_object = decoded.is_null()
    bad = frame.filter(not_object)
    for pos, line, rec in zip(
        bad.get_column("source_position"), bad.get_column("line"), _recs(bad), strict=True
    ):
        acc.reject(pos, "line is not a JSON object", line, rec, stage=1)
    return frame.filter(~not_object)


def _recs(frame: pl.DataFrame) -> list[int | None]:
    """Batch record numbers (``_rec``, only in ``parse_fhir_files``), else all None."""
    if "_rec" in frame.columns:
        return frame.get_column("_rec").to_list()
    return [None] * frame.height


def _good_rows(raw: pl.DataFrame, rtype: str | None, dtype: pl.Struct, acc: _Sink) -> pl.Series:
    """Boolean mask of lines that decode; the rest are explained and set aside."""
    lines = raw.get_column("line").to_list()
    keep = [True] * len(lines)
    for i, line in enumerate(lines):  # cheap orjson prescreen catches non-JSON lines
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            keep[i] = False
    candidates = [i for i, ok in enumerate(keep) if ok]
    for i in _bisect_bad(raw.get_column("line").gather(candidates), dtype, candidates):
        keep[i] = False
    positions = raw.get_column("source_position").to_list()
    hashes = raw.get_column("record_hash").to_list()
    recs = _recs(raw)
    for i, ok in enumerate(keep):
        if not ok:
            _explain(lines[i], positions[i], hashes[i], rtype, dtype, acc, recs[i])
    return pl.Series(keep, dtype=pl.Boolean())


def _bisect_bad(lines: pl.Series, dtype: pl.Struct, index: list[int]) -> list[int]:
    """Indices of the lines json_decode rejects, found by halving failing batches."""
    try:
        lines.str.json_decode(dtype)
        return []
    except pl.exceptions.ComputeError:
        if len(lines) == 1:
            return index
    mid = len(lines) // 2
    return _bisect_bad(lines[:mid], dtype, index[:mid]) + _bisect_bad(
        lines[mid:], dtype, index[mid:]
    )


def _explain(
    line: str,
    pos: int,
    digest: str,
    rtype: str | None,
    dtype: pl.Struct,
    acc: _Sink,
    rec: int | None = None,
) -> None:
    """Quarantine a line with a specific reason, or re-route it to its own type."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        acc.reject(pos, "line is not valid JSON", line, rec)
        return
    if not isinstance(obj, dict):
        acc.reject(pos, "line is not a JSON object", line, rec)
        return
    found = obj.get("resourceType")
    if not isinstance(found, str) or not found:
        acc.reject(pos, "resource has no resourceType", line, rec)
    elif found != rtype:
        acc.reroute(found, line, pos, digest)
    else:
        error = f"{found}.{_bad_field(obj, dtype)} has a JSON type FHIR R4 does not allow"
        acc.reject(pos, error, line, rec)


def _bad_field(obj: dict[str, object], dtype: pl.Struct) -> str:
    """Name the first mapped field whose JSON shape does not decode."""
    for f in dtype.fields:
        if f.name not in obj:
            continue
        one = pl.Series([orjson.dumps({f.name: obj[f.name]}).decode()])
        try:
            one.str.json_decode(pl.Struct({f.name: f.dtype}))
        except pl.exceptions.ComputeError:
            return f.name
    return "(unknown field)"


# ---------------------------------------------------------------------------------------
# Expression helpers


def _f(expr: pl.Expr, *path: str) -> pl.Expr:
    for name in path:
        expr = expr.struct.field(name)
    return expr


def _first(expr: pl.Expr, *path: str) -> pl.Expr:
    """First element of a list column, then a struct path into it."""
    return _f(expr.list.first(), *path)


def _coding_where(codings: pl.Expr, system: str) -> pl.Expr:
    """The first coding of a CodeableConcept.coding list with the given system."""
    return codings.list.filter(pl.element().struct.field("system") == system).list.first()


def _preferred_coding(codings: pl.Expr, systems: tuple[str, ...]) -> pl.Expr:
    """First coding in the preferred system order, else the first coding."""
    return pl.coalesce(*[_coding_where(codings, s) for s in systems], codings.list.first())


def _parse_ts(text: pl.Expr) -> pl.Expr:
    """FHIR date/dateTime/instant -> naive UTC; year and year-month mean the first day.

    FHIR requires an offset when a time is given; a missing one is read as UTC.
    """
    s = text.str.strip_chars()
    n = s.str.len_chars()
    full = (
        pl.when(n == 4)
        .then(s + "-01-01T00:00:00+00:00")
        .when(n == 7)
        .then(s + "-01T00:00:00+00:00")
        .when(n == 10)
        .then(s + "T00:00:00+00:00")
        .otherwise(s.str.replace(r"Z$", "+00:00"))
    )
    full = pl.when(full.str.contains(r"[+-]\d\d:\d\d$")).then(full).otherwise(full + "+00:00")
    parsed = full.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC", strict=False
    )
    return parsed.dt.replace_time_zone(None)


def _ts_columns(**texts: pl.Expr) -> list[pl.Expr]:
    """For each output name, the source text as ``_<name>_text`` and its parsed value.

    Keeping the text lets the error checks see "present but unparseable" without parsing
    twice.
    """
    out = []
    for name, text in texts.items():
        out.append(text.alias(f"_{name}_text"))
        out.append(_parse_ts(text).alias(name))
    return out


def _bad_ts(name: str) -> pl.Expr:
    return pl.col(f"_{name}_text").is_not_null() & pl.col(name).is_null()


def _record_id(rtype: str) -> pl.Expr:
    """Resource id; a resource without one gets ``<type>#<position>`` (unique in the file)."""
    fallback = pl.lit(f"{rtype}#") + pl.col("source_position").cast(pl.String)
    return pl.coalesce(pl.col("id"), fallback).alias("record_id")


def _subject_columns(resolve: Resolver) -> list[pl.Expr]:
    """``_ref``: the subject (or STU3-style ``patient``) reference with bundle fullUrls
    resolved; ``patient_ref``: the Patient id it points to.

    ``Patient/123`` (relative, absolute or versioned) -> 123; ``urn:uuid:X`` not defined
    in the bundle -> X.
    """
    ref = resolve(
        pl.coalesce(_f(pl.col("subject"), "reference"), _f(pl.col("patient"), "reference"))
    )
    patient_id = pl.coalesce(
        ref.str.extract(r"(?:^|/)Patient/([^/]+)", 1),
        ref.str.extract(r"^urn:uuid:(.+)$", 1),
    )
    return [ref.alias("_ref"), patient_id.alias("patient_ref")]


Resolver = Callable[[pl.Expr], pl.Expr]


def _dict_resolver(refs: dict[str, str]) -> Resolver:
    """One file's bundle references: fullUrl -> "Type/id"; anything else is kept."""

    def resolve(ref: pl.Expr) -> pl.Expr:
        return ref.replace(refs) if refs else ref

    return resolve


def _batch_resolver(keys: pl.Series, targets: pl.Series) -> Resolver:
    """Many files' bundle references: keys are ``<_file> NUL <fullUrl>``, so a fullUrl only
    resolves within the file (bundle) that defined it."""

    def resolve(ref: pl.Expr) -> pl.Expr:
        if not keys.len():
            return ref
        key = pl.concat_str([pl.col("_file").cast(pl.String), pl.lit("\x00"), ref])
        return key.replace_strict(keys, targets, default=ref, return_dtype=pl.String())

    return resolve


def _subject_checks(label: pl.Expr) -> list[Check]:
    return [
        (pl.col("_ref").is_null(), label + " has no subject reference"),
        (pl.col("patient_ref").is_null(), label + " subject is not a Patient reference"),
    ]


Check = tuple[pl.Expr, pl.Expr]


def _error_column(checks: list[Check]) -> pl.Expr:
    """``_error``: the first failed check's PHI-free message, null when all pass."""
    expr: pl.Expr = pl.lit(None, dtype=pl.String())
    for cond, message in reversed(checks):
        expr = pl.when(cond).then(message).otherwise(expr)
    return expr.alias("_error")


def _msg(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String())


@dataclass(frozen=True)
class Mapping:
    """How one entity is derived: computed columns first, then the checks that use them."""

    columns: list[pl.Expr]
    checks: list[Check]


# ---------------------------------------------------------------------------------------
# Mappers: decoded resource fields -> raw entity columns + ``_error``


def _patients(resolve: Resolver) -> Mapping:
    ids = pl.col("identifier").list.filter(_f(pl.element(), "value").is_not_null())
    is_mr = (
        _f(pl.element(), "type", "coding")
        .list.eval(pl.element().struct.field("code") == "MR")
        .list.any()
    )
    mrn = pl.coalesce(_f(ids.list.filter(is_mr).list.first(), "value"), _first(ids, "value"))
    name = pl.col("name").list.first()
    columns = [
        pl.col("id").alias("patient_ref"),
        mrn.alias("mrn"),
        _f(name, "family").alias("family_name"),
        _f(name, "given").list.join(" ").alias("given_name"),
        pl.col("gender").alias("sex"),
        *_ts_columns(birth_ts=pl.col("birthDate"), deceased_at=pl.col("deceasedDateTime")),
        _parse_ts(pl.col("birthDate")).dt.date().alias("birth_date"),
    ]
    checks = [
        (pl.col("mrn").is_null(), _msg("patient has no identifier (no MRN)")),
        (_bad_ts("birth_ts"), _msg("patient birthDate is not a valid date")),
        (_bad_ts("deceased_at"), _msg("patient deceasedDateTime is not a valid date/time")),
    ]
    return Mapping(columns, checks)


def _observations(resolve: Resolver) -> Mapping:
    codings = _f(pl.col("code"), "coding")
    loinc = _coding_where(codings, LOINC)
    first = codings.list.first()
    vq, vcc = pl.col("valueQuantity"), pl.col("valueCodeableConcept")
    vcc_first = _first(_f(vcc, "coding"))
    effective = pl.coalesce(
        pl.col("effectiveDateTime"), _f(pl.col("effectivePeriod"), "start"), pl.col("issued")
    )
    rng = pl.col("referenceRange").list.first()
    value_type = (
        pl.when(vq.is_not_null())
        .then(pl.lit("quantity"))
        .when(vcc.is_not_null())
        .then(pl.lit("coded"))
        .when(pl.col("valueString").is_not_null())
        .then(pl.lit("string"))
        .when(pl.col("valueInteger").is_not_null())
        .then(pl.lit("integer"))
        .otherwise(pl.lit("none"))
    )
    columns = [
        *_subject_columns(resolve),
        _f(_first(pl.col("category"), "coding").list.first(), "code").alias("category"),
        _f(loinc, "code").alias("loinc"),
        pl.when(loinc.is_null()).then(_f(first, "code")).alias("local_code"),
        pl.when(loinc.is_null()).then(_f(first, "system")).alias("local_system"),
        pl.coalesce(_f(pl.col("code"), "text"), _f(loinc, "display"), _f(first, "display")).alias(
            "code_display"
        ),
        value_type.alias("value_type"),
        pl.coalesce(_f(vq, "value"), pl.col("valueInteger").cast(pl.Float64())).alias(
            "value_numeric"
        ),
        _f(vq, "comparator").alias("value_comparator"),
        _f(vq, "unit").alias("value_unit"),
        _f(vq, "code").alias("value_unit_code"),
        _f(vcc_first, "code").alias("value_code"),
        _f(vcc_first, "system").alias("value_code_system"),
        pl.coalesce(pl.col("valueString"), _f(vcc, "text"), _f(vcc_first, "display")).alias(
            "value_text"
        ),
        _f(rng, "low", "value").alias("ref_low"),
        _f(rng, "high", "value").alias("ref_high"),
        _f(rng, "text").alias("ref_text"),
        _f(_first(pl.col("interpretation"), "coding").list.first(), "code").alias("abnormal_flag"),
        pl.col("status").str.to_lowercase(),
        *_ts_columns(effective_at=effective, issued_at=pl.col("issued")),
        _first(pl.col("basedOn"), "reference").alias("order_id"),
        *_concept_columns("method", "method"),
        *_concept_columns("bodySite", "body_site"),
    ]
    checks = [
        *_subject_checks(_msg("observation")),
        (
            pl.col("loinc").is_null() & pl.col("local_code").is_null(),
            _msg("observation has no code"),
        ),
        (
            pl.col("_effective_at_text").is_null(),
            _msg("observation has no effective time (effective[x] or issued)"),
        ),
        (_bad_ts("effective_at"), _msg("observation effective time is not a valid date/time")),
        (_bad_ts("issued_at"), _msg("observation issued is not a valid date/time")),
    ]
    return Mapping(columns, checks)


def _concept_columns(source: str, prefix: str) -> list[pl.Expr]:
    """code/system of the first coding, and text (else that coding's display)."""
    cc = pl.col(source)
    first = _first(_f(cc, "coding"))
    return [
        _f(first, "code").alias(f"{prefix}_code"),
        _f(first, "system").alias(f"{prefix}_system"),
        pl.coalesce(_f(cc, "text"), _f(first, "display")).alias(f"{prefix}_text"),
    ]


def _second_coding(codings: pl.Expr, primary: pl.Expr, systems: tuple[str, ...]) -> pl.Expr:
    """The first coding, in ``systems`` order, of a system other than the primary's: a
    Condition coded ICD-10-CM C49.2 *and* ICD-O-3 9581/3 must match on the morphology too."""
    system = _f(primary, "system")
    return pl.coalesce(*[pl.when(system != s).then(_coding_where(codings, s)) for s in systems])


def _conditions(resolve: Resolver) -> Mapping:
    codings = _f(pl.col("code"), "coding")
    coding = _preferred_coding(codings, (ICD10CM, ICDO3, SNOMED))
    alt = _second_coding(codings, coding, (ICDO3, SNOMED, ICD10CM))
    onset = pl.coalesce(pl.col("onsetDateTime"), _f(pl.col("onsetPeriod"), "start"))
    columns = [
        *_subject_columns(resolve),
        _f(coding, "system").alias("code_system"),
        _f(coding, "code").alias("code"),
        _f(coding, "display").alias("code_display"),
        _f(pl.col("code"), "text").alias("code_text"),
        _f(alt, "system").alias("alt_code_system"),
        _f(alt, "code").alias("alt_code"),
        _f(alt, "display").alias("alt_code_display"),
        _f(_first(_f(pl.col("clinicalStatus"), "coding")), "code").alias("clinical_status"),
        _f(_first(_f(pl.col("verificationStatus"), "coding")), "code").alias("verification_status"),
        *_ts_columns(
            onset_at=onset,
            recorded_at=pl.col("recordedDate"),
            abatement_at=pl.col("abatementDateTime"),
        ),
    ]
    checks = [
        *_subject_checks(_msg("condition")),
        (
            pl.col("code").is_null() & pl.col("code_text").is_null(),
            _msg("condition has no code or text"),
        ),
        (_bad_ts("onset_at"), _msg("condition onset is not a valid date/time")),
        (_bad_ts("recorded_at"), _msg("condition recordedDate is not a valid date/time")),
        (_bad_ts("abatement_at"), _msg("condition abatementDateTime is not a valid date/time")),
    ]
    return Mapping(columns, checks)


def _medications(resolve: Resolver) -> Mapping:
    med = pl.col("medicationCodeableConcept")
    coding = _preferred_coding(_f(med, "coding"), (RXNORM, ATC))
    start = pl.coalesce(
        pl.col("authoredOn"), _f(pl.col("effectivePeriod"), "start"), pl.col("effectiveDateTime")
    )
    columns = [
        *_subject_columns(resolve),
        pl.col("resourceType").alias("resource_type"),
        _f(coding, "system").alias("code_system"),
        _f(coding, "code").alias("code"),
        _f(coding, "display").alias("code_display"),
        pl.coalesce(_f(med, "text"), _f(pl.col("medicationReference"), "display")).alias(
            "code_text"
        ),
        pl.col("status").str.to_lowercase(),
        *_ts_columns(start_at=start, end_at=_f(pl.col("effectivePeriod"), "end")),
    ]
    label = pl.col("resourceType")
    checks = [
        *_subject_checks(label),
        (
            pl.col("code").is_null() & pl.col("code_text").is_null(),
            label + " has no medication code or text",
        ),
        (_bad_ts("start_at"), label + " start (authoredOn/effective[x]) is not a valid date/time"),
        (_bad_ts("end_at"), label + " effectivePeriod.end is not a valid date/time"),
    ]
    return Mapping(columns, checks)


MAPPERS = {
    "patients": _patients,
    "observations": _observations,
    "conditions": _conditions,
    "medications": _medications,
}
