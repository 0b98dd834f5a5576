"""One file's rows: ``_FileBuilder`` accumulates patient and observation tuples (each
message commits all its rows or none) and turns them into conformed frames, quarantine rows
and counts; a file that is not HL7 at all is one file-scope quarantine row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.hl7v2.oru import _Caches, _MessageParser
from trialscreen.feeds.hl7v2.syntax import Encoding, _Quarantine

FEED = "hl7"
FILE_PAYLOAD_LIMIT = 64 * 1024

# Column order of the tuples the parser builds (a subset of schema.RAW_COLUMNS).
PATIENT_COLUMNS = (
    "source_position", "record_id", "record_hash", "mrn", "family_name", "given_name",
    "birth_date", "sex", "deceased_at", "deceased_at_offset_min",
)  # fmt: skip
OBSERVATION_COLUMNS = (
    "source_position", "record_id", "record_hash", "mrn", "loinc", "local_code",
    "local_system", "code_display", "value_type", "value_numeric", "value_comparator",
    "value_unit", "value_unit_code", "value_code", "value_code_system", "value_text",
    "ref_low", "ref_high", "ref_text", "abnormal_flag", "status", "effective_at",
    "issued_at", "order_id", "effective_at_offset_min", "issued_at_offset_min",
    "method_code", "method_system", "method_text", "body_site_code", "body_site_system",
    "body_site_text", "facility",
)  # fmt: skip

MERGE_COLUMNS = (
    "source_position", "record_id", "record_hash", "mrn", "prior_mrn", "event_type",
    "merged_at", "merged_at_offset_min",
)  # fmt: skip


def _file_quarantine(source_file: str, reason: str, data: bytes) -> ParsedFile:
    payload = data[:FILE_PAYLOAD_LIMIT].decode("utf-8", errors="replace")
    row: dict[str, object] = {
        "feed": FEED,
        "scope": "file",
        "source_file": source_file,
        "source_position": None,
        "error": reason,
        "raw_payload": payload,
    }
    return ParsedFile(
        feed=FEED,
        source_file=source_file,
        tables={e: schema.empty_frame(e) for e in ("patients", "observations")},
        quarantined=schema.quarantine_frame([row]),
        records_in=1,
    )


@dataclass
class _FileBuilder:
    """Accumulates rows for one file; each message commits all its rows or none."""

    source_file: str
    patients: list[tuple[object, ...]] = field(default_factory=list)
    observations: list[tuple[object, ...]] = field(default_factory=list)
    merges: list[tuple[object, ...]] = field(default_factory=list)
    quarantine: list[dict[str, object]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    records_in: int = 0
    caches: dict[Encoding, _Caches] = field(default_factory=dict)

    def caches_for(self, enc: Encoding) -> _Caches:
        caches = self.caches.get(enc)
        if caches is None:
            caches = self.caches[enc] = _Caches()
        return caches

    def quarantine_record(self, position: int, error: str, payload: str) -> None:
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
        self.records_in += 1

    def add_message(self, position: int, segments: list[str]) -> None:
        """Parse one message; any unexpected failure quarantines it whole, rows rolled back."""
        marks = (
            len(self.patients), len(self.observations), len(self.quarantine), len(self.merges)
        )  # fmt: skip
        records_before = self.records_in
        try:
            _MessageParser(self, position, segments).run()
        except _Quarantine as exc:
            self._rollback(marks, records_before)
            self.quarantine_record(position, str(exc), "\r".join(segments))
        except Exception as exc:  # a parser bug must not lose the rest of the file
            self._rollback(marks, records_before)
            reason = f"unexpected parser error ({type(exc).__name__})"
            self.quarantine_record(position, reason, "\r".join(segments))

    def _rollback(self, marks: tuple[int, int, int, int], records_before: int) -> None:
        del self.patients[marks[0] :]
        del self.observations[marks[1] :]
        del self.quarantine[marks[2] :]
        del self.merges[marks[3] :]
        self.records_in = records_before

    def result(self) -> ParsedFile:
        """This file's rows, conformed to the raw contract (one file's ``assemble``)."""
        return assemble([self], {})[0]

    def rows(self, entity: str) -> list[tuple[object, ...]]:
        return {"patients": self.patients, "observations": self.observations,
                "patient_merges": self.merges}[entity]  # fmt: skip


ENTITY_COLUMNS = {
    "patients": PATIENT_COLUMNS,
    "observations": OBSERVATION_COLUMNS,
    "patient_merges": MERGE_COLUMNS,
}


def assemble(builders: list[_FileBuilder], columnar: dict[str, pl.DataFrame]) -> list[ParsedFile]:
    """Each builder's file as a ``ParsedFile``: the walked rows of all files in one frame per
    entity, conformed once, with ``columnar``'s (the regular messages' rows, conformed, with
    the file's index in ``file``), each file's rows in file order (each part is in order, and
    a message is on one path). Polars' cost is per call: a call per file would cost more
    than the rows."""
    tables: list[dict[str, pl.DataFrame]] = [{} for _ in builders]
    names = pl.DataFrame(
        {"file": range(len(builders)), "source_file": [b.source_file for b in builders]},
        schema={"file": pl.Int64, "source_file": pl.String},
    )
    for entity, columns in ENTITY_COLUMNS.items():
        parts = []
        walked = [(k, *row) for k, b in enumerate(builders) for row in b.rows(entity)]
        if walked:
            types = schema.RAW_COLUMNS[entity]
            frame = pl.DataFrame(
                dict(zip(("file", *columns), map(list, zip(*walked, strict=True)), strict=True)),
                schema={"file": pl.Int64, **{n: types[n] for n in columns}},
            ).join(names, on="file", how="left", maintain_order="left")
            parts.append(conformed(entity, frame).with_columns(frame.get_column("file")))
        found = columnar.get(entity)
        if found is not None and found.height:
            parts.append(found)
        if not parts:
            continue
        frame = parts[0]
        if len(parts) > 1:
            frame = pl.concat(parts).sort("file", "source_position", maintain_order=True)
        by_file = frame.partition_by("file", as_dict=True, include_key=False, maintain_order=True)
        for (k,), part in by_file.items():
            tables[int(k)][entity] = part
    return [
        ParsedFile(
            feed=FEED,
            source_file=b.source_file,
            tables={e: t[e] if e in t else schema.empty_frame(e) for e in ENTITY_COLUMNS},
            quarantined=(
                schema.quarantine_frame(b.quarantine)
                if b.quarantine
                else pl.DataFrame(schema=schema.QUARANTINE_COLUMNS)
            ),
            records_in=b.records_in,
            ignored=dict(b.ignored),
        )
        for b, t in zip(builders, tables, strict=True)
    ]


def conformed(entity: str, frame: pl.DataFrame) -> pl.DataFrame:
    """A frame of parser columns (and ``source_file``) in the raw contract."""
    extra = [pl.col("mrn").alias("patient_ref")]
    if entity == "observations":
        extra.append(pl.lit("laboratory").alias("category"))
    return schema.conform(entity, frame.with_columns(extra))
