"""The worklist as CSV or XLSX: one row per patient and criterion (the same content as the
page), in the page's order. Every export writes an audit row to the decisions store (who,
when, what, how many rows). Files are 0600; text that a spreadsheet would run as a formula
(starting with = + - @) is prefixed with an apostrophe (OWASP, "CSV Injection")."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from trialscreen.worklist.build import Worklist
from trialscreen.worklist.decisions import DecisionStore

FORMATS = ("csv", "xlsx")
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


def rows(worklist: Worklist, trial_id: str | None = None) -> tuple[list[str], list[list[Any]]]:
    extras = list(worklist.extra_columns)
    header = BASE_HEADER + extras
    out: list[list[Any]] = []
    for e in worklist.for_trial(trial_id):
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
            out.append(
                [
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
            )
    return header, out


def _private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)


def export(
    worklist: Worklist,
    store: DecisionStore,
    out: Path,
    fmt: str,
    trial_id: str | None = None,
    who: str = "",
) -> int:
    """Write the worklist (one trial, or all) to ``out``; returns the rows written. The audit
    row is written before the file is handed over: no export without its audit row."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    header, body = rows(worklist, trial_id)
    out = Path(out)
    _private(out)
    if fmt == "csv":
        with out.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(body)
    else:
        from openpyxl import Workbook  # type: ignore[import-untyped]

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "worklist"
        sheet.append(header)
        for row in body:
            sheet.append(["" if v is None else v for v in row])
        sheet.freeze_panes = "A2"
        book.save(out)
        os.chmod(out, 0o600)
    what = f"worklist run {worklist.run_id} trial {trial_id or 'all'}"
    store.record_export(what, fmt, len(body), str(out), who=who)
    return len(body)
