"""CSV feed parser (docs/specification.md#csv-extract) for two dialects, vectorized with polars.

* The TrialScreen flat contract (``contract.CSV_FILES``): one file per entity, lowercase
  headers, the entity named by the file stem (``lab_results.csv``,
  ``lab_results.2026-11-01.csv.gz``).
* The Synthea CSV export (``patients.csv`` ``Id,BIRTHDATE,...``; ``observations.csv``,
  ``conditions.csv``, ``medications.csv``): recognised by its header (``Id`` or UPPERCASE
  names). Synthea has no MRN, so its patient ``Id`` stands in as ``mrn`` and ``patient_ref``.

Every cell is read as a string (``infer_schema=False``) so that nothing is coerced before the
contract decides what it means; a bad cell quarantines its row, never the file. Quarantine
errors name columns, never cell values (a cell may be an MRN or a birth date). The column
documentation lives in ``docs/csv_contract.md``.
"""

from __future__ import annotations

from pathlib import Path

from trialscreen.feeds import ParsedFile
from trialscreen.feeds.csv.contract import CONTRACT_MAPPINGS, CSV_FILES, REQUIRED, _parse_contract
from trialscreen.feeds.csv.mapping import CODE_SYSTEMS, Mapping
from trialscreen.feeds.csv.oversize import apply_cut, cut_oversize_rows
from trialscreen.feeds.csv.read import (
    FEED,
    PAYLOAD_LIMIT,
    UnreadableFileError,
    _file_quarantined,
    _payload_head,
    _read_bytes,
    _read_frame,
    _relative_posix,
)
from trialscreen.feeds.csv.synthea import SYNTHEA_MAPPINGS, _parse_synthea, is_synthea_header

__all__ = [
    "CODE_SYSTEMS",
    "CONTRACT_MAPPINGS",
    "CSV_FILES",
    "FEED",
    "PAYLOAD_LIMIT",
    "REQUIRED",
    "SYNTHEA_MAPPINGS",
    "Mapping",
    "UnreadableFileError",
    "entity_stem",
    "is_csv_file",
    "is_synthea_header",
    "parse_csv_bytes",
    "parse_csv_file",
]

# ---------------------------------------------------------------- public API


def is_csv_file(path: Path) -> bool:
    """A CSV feed file: ``*.csv`` or ``*.csv.gz`` (case-insensitive)."""
    name = Path(path).name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def parse_csv_file(path: Path, root: Path) -> ParsedFile:
    """Parse one CSV feed file of either dialect into raw tables and quarantine rows.

    ``records_in`` counts data rows (a file quarantined as a whole counts as one record), so
    ``records_in == rows_out + quarantined rows`` always holds. Files of the Synthea export
    that the pipeline does not use are counted in ``ignored`` and yield no records.
    """
    path = Path(path)
    source_file = _relative_posix(path, root)
    try:
        return parse_csv_bytes(_read_bytes(path), entity_stem(path), source_file)
    except UnreadableFileError as exc:
        return _file_quarantined(source_file, str(exc), _payload_head(path))


def parse_csv_bytes(data: bytes, stem: str, source_file: str) -> ParsedFile:
    """A CSV file's bytes (header row first) parsed as ``parse_csv_file`` parses the file;
    ``UnreadableFileError`` when they cannot be read as CSV."""
    data, cut = cut_oversize_rows(data)  # rows over the record limit, quarantined alone
    raw = _read_frame(data)
    if is_synthea_header(raw.columns):
        return apply_cut(_parse_synthea(raw, stem, source_file, data), cut)
    return apply_cut(_parse_contract(raw, stem, source_file, data), cut)


def entity_stem(path: Path) -> str:
    """The entity a file holds: its name up to the first dot (``lab_results.2026-11-01.csv``)."""
    return Path(path).name.split(".", 1)[0].strip().lower()
