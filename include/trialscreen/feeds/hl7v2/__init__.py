"""HL7 v2 ORU^R01 lab feed parser (docs/specification.md#hl7-v2): one file of messages ->
``ParsedFile``.

Why plain string splitting: an object-per-field library parses ~2 MB/s here, splitting
on the separators runs two orders of magnitude faster (docs/specification.md#stack-notes).
Regular ORU messages (the common case) are split by polars, a run of files together, with
every value decided by the walker's own functions once per distinct text (``columnar.py``;
docs/decisions.md#hl7-columnar); every other message is walked once, segment by segment
(``oru.py``), its rows plain tuples turned into polars frames at the end of the batch. Both
paths' rows go through ``schema.conform`` and land in file order; the rules below are the
walker's, and the columnar path is tested to give the same rows.

Framing tolerated: UTF-8 BOM, MLLP bytes (0x0b, 0x1c), segment ends CR / LF / CRLF, blank
lines, batch envelopes (FHS/BHS/BTS/FTS, skipped), OBX segments run together on one line
(``...| OBX|...``, split back into segments). Bytes decode as UTF-8 with ``errors="replace"``
so mojibake stays visible. Separators come from each message's MSH-1/MSH-2; a doubled
escape character (``^~\\\\&``) and a non-standard subcomponent character (``^~\\$``) are
accepted. Escape sequences are decoded per extracted value, after splitting; an escape that
is not a known sequence (MOLIS uses ``\\`` as a literal divider) stays verbatim.

Records and the invariant ``records_in == rows out + quarantined rows``:
* an ORU message that cannot be attributed to a patient (no MSH fields, no PID segment) is
  one record, quarantined whole;
* otherwise each PID is one record and each OBX is one record. A PID whose PID-3 carries
  no identifier is quarantined together with its OBX segments as one record (its results
  have no patient); an OBX before any PID is one quarantined record;
* text before the first MSH that is not a batch header is one quarantined record at
  position 0; a file with no MSH at all is one file-scope quarantine row (one record);
* ADT merge messages (A40, A34, A18): each MRG (retired MRN in MRG-1) with the PID before
  it (surviving MRN in PID-3) is one record, a ``patient_merges`` row (merged_at = EVN-2,
  else MSH-7); an MRG without a usable PID-3 or MRG-1 is quarantined;
* other messages that are not ORU (ADT, ACK, ...) are not records:
  ``ignored["ADT^A01"] += 1``.
Quarantine ``source_position`` is the 1-based message index; ``raw_payload`` the message
text; ``error`` names fields and ordinals only, never a value (values may be PHI).

Value decisions (the staging layer relies on them):
* value_type: ``quantity`` when a number was read (NM, SN, or an ST that is exactly a
  number with optional comparator), ``coded`` for CE/CWE/CNE/CF, ``none`` when OBX-5 is
  empty (pending results), else ``string`` (TX/FT/DTM/RP/..., and NM that is not a number,
  e.g. ``Hello``: landed with ``value_numeric`` null so staging sees it as unusable).
* repeated OBX-5 (``37.0~37.1``): the first repetition is the value, value_text keeps all.
* OBX-7 ``ref_low``/``ref_high`` only when one range is unambiguous (``0.6-1.2``, ``<1.2``,
  ``>=10``, ``3.5 to 5.0``, ``70_105``, ``(<1.0)``, ``-3-3``, optionally followed by a unit
  or words without digits); several ranges or component-structured ranges stay text only.
* OBX-11 status lands as sent (trimmed; blank -> null): raw keeps values as sent. Staging
  maps it to the FHIR vocabulary (macro normalize_result_status, HL7 table 0085 as in the
  HL7 v2-to-FHIR concept map: F/U final, C corrected, A amended, P/R/S preliminary, I/O
  registered, X/N cancelled, D/W entered-in-error; other codes kept lowercased).
* A field-shifted OBX (OBX-5 and OBX-6 empty, OBX-7 holds a value of the OBX-2 type and
  OBX-8 is not empty; seen in realm-hepatitis-c-virus) is quarantined rather than landing
  its unit as a flag.
* effective_at = OBX-14 else OBR-7 (an unparseable one quarantines the OBX; both empty ->
  null); issued_at = MSH-7 (unparseable -> null); PID-7 birth date unparseable -> null.
* record_id = ``MSH-10|OBR-3|OBX-1|OBX-3 code|OBX-11|n`` (n = the OBX's ordinal in the
  message, so repeated set ids stay distinct); record_hash = sha256 of MSH-10, MSH-7, the
  MRN, the observation time used and the raw OBX segment. Patients: ``MSH-10|PID|k`` and
  sha256 of MSH-10 and the raw PID segment.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from trialscreen import limits
from trialscreen.feeds import ParsedFile, bounded
from trialscreen.feeds.hl7v2.columnar import columnar_file, split_files
from trialscreen.feeds.hl7v2.oru import _MessageParser
from trialscreen.feeds.hl7v2.rows import (
    FEED,
    FILE_PAYLOAD_LIMIT,
    OBSERVATION_COLUMNS,
    PATIENT_COLUMNS,
    _file_quarantine,
    _FileBuilder,
    assemble,
)
from trialscreen.feeds.hl7v2.syntax import Encoding, _is_msh, _messages, _segments, unescape
from trialscreen.feeds.hl7v2.values import (
    parse_date,
    parse_reference_range,
    parse_ts,
)

__all__ = [
    "FEED",
    "OBSERVATION_COLUMNS",
    "PATIENT_COLUMNS",
    "SUFFIXES",
    "Encoding",
    "is_hl7_file",
    "parse_date",
    "parse_hl7_bytes",
    "parse_hl7_file",
    "parse_hl7_files",
    "parse_reference_range",
    "parse_ts",
    "unescape",
]

SUFFIXES = frozenset({".hl7", ".txt"})


def is_hl7_file(path: Path) -> bool:
    """HL7 drops are named ``*.hl7`` or ``*.txt`` (docs/specification.md#hl7-v2)."""
    return path.suffix.lower() in SUFFIXES


def parse_hl7_file(path: Path, root: Path) -> ParsedFile:
    """Parse one HL7 file; ``source_file`` is its path relative to ``root`` (posix)."""
    return next(parse_hl7_files([path], root))


# a run of files parsed together: up to this many bytes or files (the ingest's units of work
# are the same size: ingest.parse.UNIT_BYTES, UNIT_FILES)
BATCH_BYTES = 16 << 20
BATCH_FILES = 1000


def parse_hl7_files(paths: Sequence[Path], root: Path) -> Iterator[ParsedFile]:
    """``parse_hl7_file`` for each path, in order: the regular messages of a run of files are
    parsed together (``columnar.py``), each file's result the same as alone."""
    batch: list[tuple[str, bytes | ParsedFile]] = []
    size = 0
    for path in map(Path, paths):
        source_file, read = _read(path, Path(root))
        batch.append((source_file, read))
        size += len(read) if isinstance(read, bytes) else 0
        if size >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            yield from _parse_or_alone(batch)
            batch, size = [], 0
    yield from _parse_or_alone(batch)


def _parse_or_alone(batch: list[tuple[str, bytes | ParsedFile]]) -> Iterator[ParsedFile]:
    """The batch's results; when parsing the batch raises (a parser bug), each file alone, so
    the files before the failing one are yielded and the failure is raised at its file (the
    ingest quarantines that file and goes on: ``ingest.parse._contained``)."""
    try:
        results = _parse_batch(batch)
    except Exception:
        if len(batch) == 1:
            raise
        for item in batch:
            yield _parse_batch([item])[0]
        return
    yield from results


def _read(path: Path, root: Path) -> tuple[str, bytes | ParsedFile]:
    """(source_file, the file's bytes or its file-scope quarantine)."""
    try:
        source_file = path.relative_to(root).as_posix()
    except ValueError:
        source_file = path.as_posix()
    try:
        return source_file, bounded.read_file(path)  # within the limit; no symlink, no FIFO
    except bounded.RefusedInput as exc:
        return source_file, _file_quarantine(source_file, exc.reason, exc.partial)
    except OSError as exc:
        reason = f"file cannot be read ({type(exc).__name__})"
        return source_file, _file_quarantine(source_file, reason, b"")


def parse_hl7_bytes(data: bytes, source_file: str, *, columnar: bool = True) -> ParsedFile:
    """Parse the bytes of one HL7 file (any number of messages). The regular ORU messages
    are parsed a column at a time (``columnar.py``), the others walked one by one; with
    ``columnar=False`` every message is walked (the reference the columnar path is tested
    against)."""
    return _parse_batch([(source_file, data)], columnar=columnar)[0]


def _parse_batch(
    batch: Sequence[tuple[str, bytes | ParsedFile]], *, columnar: bool = True
) -> list[ParsedFile]:
    results: list[ParsedFile | None] = []
    walked: list[tuple[int, _FileBuilder, list[tuple[int, list[str]]]]] = []
    split: list[tuple[int, _FileBuilder, str, bytes]] = []  # files for columnar.py
    for source_file, data in batch:
        if isinstance(data, ParsedFile):
            results.append(data)
            continue
        results.append(None)
        text = data.decode("utf-8", errors="replace")
        if columnar and "MSH" in text and columnar_file(text):
            split.append((len(results) - 1, _FileBuilder(source_file), text, data))
            continue
        segments = _segments(text)
        if not any(_is_msh(s) for s in segments):
            results[-1] = _not_hl7(source_file, segments, data)
            continue
        walked.append((len(results) - 1, _FileBuilder(source_file), _messages(segments)))
    limit = limits.current().max_record_bytes
    regular: dict[str, pl.DataFrame] = {}
    with _gc_paused():
        if split:
            walker = _MessageParser(_FileBuilder(""), 1, [])
            texts = [text for _, _, text, _ in split]
            parts = split_files(texts, [b.source_file for _, b, _, _ in split], walker, limit)
            regular = parts.in_batch([len(walked) + k for k in range(len(split))])
            headerless = set(parts.headerless)
            for k, ((index, builder, _, data), records, messages) in enumerate(
                zip(split, parts.records, parts.others, strict=True)
            ):
                if k in headerless:  # "MSH" was in its text, never as a header
                    results[index] = _not_hl7(builder.source_file, [""], data)
                builder.records_in = records
                walked.append((index, builder, messages))
        for _, builder, messages in walked:
            for position, message in messages:
                size = _message_bytes(message, limit)
                if size > limit:  # quarantined alone, never parsed; the file goes on
                    payload = "\r".join(message)[:FILE_PAYLOAD_LIMIT]
                    error = limits.record_too_large("message", size, limit)
                    builder.quarantine_record(position, error, payload)
                    continue
                builder.add_message(position, message)
        builders = [builder for _, builder, _ in walked]
        for (index, _, _), parsed in zip(walked, assemble(builders, regular), strict=True):
            if results[index] is None:
                results[index] = parsed
    return [r for r in results if r is not None]


def _not_hl7(source_file: str, segments: list[str], data: bytes) -> ParsedFile:
    reason = "file is empty" if not segments else "no MSH segment found: not an HL7 v2 file"
    return _file_quarantine(source_file, reason, data)


def _message_bytes(message: list[str], limit: int) -> int:
    """The message's size in UTF-8 bytes (segments joined by CR); exact only near the limit."""
    chars = sum(map(len, message)) + len(message) - 1
    if chars * 4 <= limit:  # a character is at most 4 bytes: surely under the limit
        return chars
    return len("\r".join(message).encode("utf-8", errors="replace"))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while rows accumulate: the row tuples hold no cycles, and gen-2
    collections over hundreds of thousands of tuples cost ~20-30% of parse time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
