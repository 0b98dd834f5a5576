"""Reading one FHIR file: bytes (gunzipped), then NDJSON lines or Bundle entries as records.

Also the file's result shell: the empty ``ParsedFile`` every parse starts from and the
whole-file quarantine row for a file that cannot be read.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from trialscreen import limits, schema
from trialscreen.feeds import ParsedFile, bounded
from trialscreen.feeds.fhir.resources import USED_TYPES

if TYPE_CHECKING:
    from trialscreen.feeds.fhir.batch import _Accumulator

FEED = "fhir"
PAYLOAD_LIMIT = 64 * 1024

_NDJSON_NAME = re.compile(r"^([A-Z][A-Za-z]+)(?:\.\d+)?\.ndjson(?:\.gz)?$")


def _new_result(path: Path, root: Path) -> ParsedFile:
    result = ParsedFile(feed=FEED, source_file=path.relative_to(root).as_posix())
    result.tables = {e: schema.empty_frame(e) for e in schema.ENTITIES}  # always all four
    return result


# ---------------------------------------------------------------------------------------
# Reading files


class _FileError(Exception):
    """The whole file is unreadable; carries a PHI-free reason and what could be read."""

    def __init__(self, reason: str, payload: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payload = payload


def _is_ndjson(path: Path) -> bool:
    return path.name.lower().endswith((".ndjson", ".ndjson.gz"))


def _ndjson_type(path: Path) -> str | None:
    """Bulk Data names the resource type in the file name; None when it does not."""
    m = _NDJSON_NAME.match(path.name)
    return m.group(1) if m else None


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped, read within the limits (``feeds.bounded``): a gzip bomb,
    an oversize file, a symlink or a FIFO is a file error, never read whole."""
    try:
        return bounded.read_file(path)
    except bounded.RefusedInput as exc:
        raise _FileError(exc.reason, refusal_payload(path, exc)) from None


def refusal_payload(path: Path, exc: bounded.RefusedInput) -> bytes:
    """What the quarantine row of a refused file keeps: the head decompressed before the
    refusal; for a broken gzip that gave nothing, its first bytes as stored."""
    if isinstance(exc, bounded.BadGzip):
        return exc.partial or _raw_head(path)
    return exc.partial


def _raw_head(path: Path) -> bytes:
    """The first bytes of a broken gzip as stored (for the payload)."""
    try:
        with bounded.open_regular(path) as handle:
            return handle.read(PAYLOAD_LIMIT)
    except bounded.RefusedInput:
        return b""


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


def _collect_ndjson(data: bytes, rtype: str | None, acc: _Accumulator, first_line: int = 1) -> None:
    """One resource per line; positions are 1-based line numbers (``first_line`` is the
    number of the first line of ``data``: a part of a file starts inside it); blank lines
    are skipped."""
    limit = limits.current().max_record_bytes
    records = []
    for n, line in enumerate(data.splitlines(), first_line):
        if len(line) > limit:  # quarantined alone, never decoded
            acc.reject(n, limits.record_too_large("line", len(line), limit), _payload(line))
        elif line.strip():
            records.append(
                (line.decode("utf-8", errors="replace"), n, hashlib.sha256(line).hexdigest())
            )
    acc.groups[rtype if rtype in USED_TYPES else None] = records


def _collect_json(data: bytes, acc: _Accumulator) -> None:
    """A Bundle (any type; its entries are walked) or a single resource."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _FileError("file is not valid JSON", data) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise _FileError("file is not a FHIR resource or Bundle (no resourceType)", data)
    limit = limits.current().max_record_bytes  # read once: a bundle holds thousands
    if doc["resourceType"] != "Bundle":
        _collect_resource(doc, 1, None, acc, limit)
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
        url = full_url if isinstance(full_url, str) else None
        _collect_resource(resource, pos, url, acc, limit)


def _collect_resource(
    res: object, pos: int, full_url: str | None, acc: _Accumulator, limit: int
) -> None:
    """One resource into its type group (``limit``: the record limit in bytes)."""
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
        if rtype == "Medication":
            text = orjson.dumps(res, option=orjson.OPT_SORT_KEYS)
            acc.medication(res, pos, hashlib.sha256(text).hexdigest())
        return
    text = orjson.dumps(res, option=orjson.OPT_SORT_KEYS)
    if len(text) > limit:
        acc.reject(pos, limits.record_too_large("resource", len(text), limit), _payload(text))
        return
    acc.groups.setdefault(rtype, []).append((text.decode(), pos, hashlib.sha256(text).hexdigest()))


def _dump_any(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# A Medication resource is not a record of the feed (it describes a drug, not something that
# happened to a patient; it stays counted in ``ignored``): its codings land in the codings
# child table under entity ``medication_resources`` and record id ``Medication/<id>``, where
# dbt resolves the ``medicationReference`` of requests, statements and administrations.
MEDICATION_RESOURCES = "medication_resources"


def medication_coding_rows(
    res: dict[str, object], source_file: str, pos: int, digest: str
) -> list[dict[str, object]]:
    """The codings of one Medication resource as ``schema.CODING_COLUMNS`` rows."""
    rid = res.get("id")
    code = res.get("code")
    if not isinstance(rid, str) or not isinstance(code, dict):
        return []
    codings = code.get("coding")
    rows: list[dict[str, object]] = []
    for coding in codings if isinstance(codings, list) else []:
        if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
            continue
        system, display = coding.get("system"), coding.get("display")
        rows.append(
            {
                "source_file": source_file,
                "source_position": pos,
                "record_id": f"Medication/{rid}",
                "record_hash": digest,
                "entity": MEDICATION_RESOURCES,
                "element": "code",
                "seq": len(rows) + 1,
                "system": system if isinstance(system, str) else None,
                "code": coding["code"],
                "display": display if isinstance(display, str) else None,
            }
        )
    return rows
