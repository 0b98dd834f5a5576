"""The oracle's answers as ``expected/`` holds them: the files and their headers, the number
format, and one patient's rows of ``criteria.csv``, ``candidates.csv`` and ``values.csv``
(written the same way by a population's parts, ``shard``, and by a night's increment,
``increment``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from trialscreen.synth import oracle

EXPECTED_FILES = ("criteria.csv", "candidates.csv", "values.csv", "scenarios.csv")
EXPECTED_HEADERS = {
    "criteria.csv": ["mrn", "trial_id", "cohort_id", "criterion_id", "status", "reason",
                     "valid_until", "margin", "missing_item"],
    "candidates.csv": ["mrn", "trial_id", "cohort_id", "candidate_status", "rescreen_by",
                       "sole_missing_criterion"],
    "values.csv": ["mrn", *oracle.VALUE_COLUMNS],
    "scenarios.csv": ["mrn", "route", "lab_feed", "bundle", "scenario"],
}  # fmt: skip


class Rows(Protocol):
    """A ``csv.writer``."""

    def writerow(self, row: Iterable[Any], /) -> Any: ...


def fmt(v: float | int | None) -> str:
    if v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    return f"{v:.4f}".rstrip("0").rstrip(".")


def write_outcome(
    mrn: str, result: oracle.Outcome, criteria: Rows, candidates: Rows, values: Rows
) -> None:
    """One patient's rows: a criterion per line, a cohort per line, the derived values."""
    for cohort, cid, status, reason in result.criteria:
        co = result.coordination[cid]
        criteria.writerow(
            [mrn, oracle.TRIAL_ID, cohort, cid, status, reason,
             co.valid_until or "", fmt(co.margin), co.missing_item or ""]
        )  # fmt: skip
    for cohort, status in result.candidates.items():
        candidates.writerow(
            [mrn, oracle.TRIAL_ID, cohort, status,
             result.rescreen_by[cohort] or "", result.sole_missing[cohort] or ""]
        )  # fmt: skip
    values.writerow([mrn, *(fmt(result.values[c]) for c in oracle.VALUE_COLUMNS)])
