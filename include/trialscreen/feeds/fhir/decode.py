"""Decoding records: explicit struct dtypes, one json_decode per chunk, bad lines found.

Only the fields the mappers read are decoded (unknown JSON keys are skipped by polars). A
chunk that fails to decode is prescreened with orjson and bisected, and each bad line is
quarantined with a specific reason or re-routed to the group of its own resourceType.
"""

from __future__ import annotations

from typing import Protocol

import orjson
import polars as pl

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
    # contained Medication resources a "#id" medicationReference points to
    "contained": pl.List(pl.Struct({"resourceType": _S, "id": _S, "code": _CC})),
    "intent": _S,  # MedicationRequest: proposal / plan / order ... (proposal, plan: not given)
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
            # mCODE TumorSize: the dimensions of a tumor size measurement
            "component": pl.List(pl.Struct({"code": _CC, "valueQuantity": _QTY})),
            # meta.source: the sending laboratory/facility that keys local codes
            "meta": pl.Struct({"source": _S}),
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


class _Sink(Protocol):
    """Where decoding sends rejected and re-routed records: one file, or a batch of files."""

    def reject(
        self, position: int | None, error: str, payload: str, rec: int | None = None
    ) -> None: ...

    def reroute(self, rtype: str | None, line: str, pos: int, digest: str) -> None: ...


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
        acc.reject(pos, "line is not a JSON object", line, rec)
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
