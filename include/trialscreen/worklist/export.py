"""The worklist as CSV or XLSX: one row per patient and criterion (the same content as the
page), in the page's order. Every export writes an audit row to the decisions store (who,
when, what, how many rows). Files are 0600; text that a spreadsheet would run as a formula
(starting with = + - @) is prefixed with an apostrophe (OWASP, "CSV Injection")."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trialscreen.worklist.decisions import DecisionStore
from trialscreen.worklist.render import Source

FORMATS = ("csv", "xlsx")
XLSX_ROWS = 1_048_575  # an Excel sheet's rows, less the header
BASE_HEADER = [
    "trial_id",
    "cohort_id",
    "mrn",
    "family_name",
    "given_name",
    "birth_date",
    "age_years",
    "candidate_status",
    "n_unknown",
    "new_since_last_run",
    "no_longer_eligible",
    "rescreen_by",
    "only_missing",
    "decision",
    "decision_reason",
    "decided_by",
    "decided_at",
    "next_steps",
    "criterion_id",
    "criterion",
    "criterion_status",
    "value",
    "unit",
    "threshold",
    "evidence_date",
    "reason",
]


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def rows(source: Source, trial_id: str | None = None) -> Iterator[list[Any]]:
    """The export's rows (after its header), in the page's order, one entry at a time."""
    extras = list(source.extra_columns)
    for trial, cohort in source.cohorts():
        if trial_id not in (None, trial):
            continue
        for e in source.ordered(trial, cohort):
            d = e.decision or {}
            patient = [
                e.trial_id,
                e.cohort_id,
                e.mrn,
                e.family_name,
                e.given_name,
                e.birth_date,
                e.age_years,
                e.candidate_status,
                e.n_unknown,
                e.is_new,
                e.is_no_longer_eligible,
                e.rescreen_by,
                e.missing_item,
                d.get("outcome"),
                d.get("reason"),
                d.get("recorded_by"),
                d.get("recorded_at"),
                "; ".join(e.next_steps),
            ]
            for c in e.criteria:
                yield [
                    _safe(v)
                    for v in patient
                    + [
                        c.criterion_id,
                        c.label,
                        c.status,
                        c.value,
                        c.unit,
                        c.threshold,
                        c.evidence_at,
                        c.reason,
                        *(c.extra.get(x) for x in extras),
                    ]
                ]


def _private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)


def export(
    source: Source,
    store: DecisionStore,
    out: Path,
    fmt: str,
    trial_id: str | None = None,
    who: str = "",
) -> int:
    """Write the worklist (one trial, or all) to ``out``, streamed; returns the rows written.
    The audit row is written before the file is handed over: no export without its audit
    row. An XLSX sheet holds at most ``XLSX_ROWS`` rows: a larger worklist is refused before
    anything is written (CSV has no such limit)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    header = BASE_HEADER + list(source.extra_columns)
    total = source.rows(trial_id) if fmt == "xlsx" else 0  # a count over every criterion row
    if total > XLSX_ROWS:
        raise ValueError(
            f"the worklist has {total:,} rows and an XLSX sheet holds "
            f"{XLSX_ROWS:,}: export --format csv, or one trial with --trial"
        )
    out = Path(out)
    _private(out)
    written = 0
    if fmt == "csv":
        with out.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in rows(source, trial_id):
                writer.writerow(row)
                written += 1
    else:
        from openpyxl import Workbook  # type: ignore[import-untyped]

        book = Workbook(write_only=True)  # rows streamed to the file, not held as cells
        sheet = book.create_sheet("worklist")
        sheet.freeze_panes = "A2"
        sheet.append(header)
        for row in rows(source, trial_id):
            sheet.append(["" if v is None else v for v in row])
            written += 1
        book.save(out)
        os.chmod(out, 0o600)
    what = f"worklist run {source.run_id} trial {trial_id or 'all'}"
    store.record_export(what, fmt, written, str(out), who=who)
    return written
