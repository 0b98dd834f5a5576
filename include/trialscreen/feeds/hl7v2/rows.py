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
        tables = {
            "patients": self._frame("patients", PATIENT_COLUMNS, self.patients),
            "observations": self._frame("observations", OBSERVATION_COLUMNS, self.observations),
            "patient_merges": self._frame("patient_merges", MERGE_COLUMNS, self.merges),
        }
        quarantined = (
            schema.quarantine_frame(self.quarantine)
            if self.quarantine
            else pl.DataFrame(schema=schema.QUARANTINE_COLUMNS)
        )
        return ParsedFile(
            feed=FEED,
            source_file=self.source_file,
            tables=tables,
            quarantined=quarantined,
            records_in=self.records_in,
            ignored=dict(self.ignored),
        )

    def _frame(
        self, entity: str, names: tuple[str, ...], rows: list[tuple[object, ...]]
    ) -> pl.DataFrame:
        if not rows:
            return schema.empty_frame(entity)
        types = schema.RAW_COLUMNS[entity]
        columns = dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))
        frame = pl.DataFrame(columns, schema={n: types[n] for n in names})
        extra = [pl.lit(self.source_file).alias("source_file"), pl.col("mrn").alias("patient_ref")]
        if entity == "observations":
            extra.append(pl.lit("laboratory").alias("category"))
        return schema.conform(entity, frame.with_columns(extra))
