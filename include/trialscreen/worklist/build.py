"""Reading the worklist: restricted.worklist (one row per patient and criterion) becomes one
entry per (trial, cohort, patient) with its criteria, the coordinators' current decision, and
the order a coordinator works in (docs/decisions.md, "The coordinators' worklist").

Order within a trial and cohort: ready_for_review first, then missing_data by the number of
unknown criteria (fewest first: closest to ready), then by the earliest re-screen date
(marts.screening_results.rescreen_by), then by MRN. Patients whose current decision
closes them (screen-failed, not interested, enrolled) while their candidate status is what it
was when the decision was made come after the open ones; patients who are no longer
candidates come last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl

from trialscreen.warehouse import STREAM_ROWS, Warehouse
from trialscreen.worklist.decisions import CLOSING_OUTCOMES, Decision

WORKLIST_TABLE = "restricted.worklist"
PATIENT_COLUMNS = (
    "run_id",
    "screening_date",
    "trial_id",
    "cohort_id",
    "patient_key",
    "mrn",
    "family_name",
    "given_name",
    "birth_date",
    "age_years",
    "candidate_status",
    "n_unknown",
    "is_new",
    "is_no_longer_eligible",
    "previous_status",
    "first_eligible_on",
    "rescreen_by",
    "sole_missing_criterion",
    "sole_missing_next_step",
)
CRITERION_COLUMNS = (
    "criterion_id",
    "criterion_ordinal",
    "criterion_label",
    "criterion_status",
    "value_numeric",
    "value_unit",
    "threshold",
    "uln",
    "evidence_source",
    "evidence_at",
    "reason",
)
# per-criterion columns kept in Criterion.extra (with any column a later release adds)
CRITERION_DETAIL = (
    "comparator",
    "margin",
    "near_flip",
    "evidence_date",
    "valid_until",
    "missing_item",
    "next_step",
)
READINESS = {"ready_for_review": 0, "missing_data": 1, "ineligible": 2}


def _plain(value: Any) -> Any:
    """JSON-safe scalar: dates as ISO text, decimals as float."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def decision_dict(d: Decision) -> dict[str, Any]:
    """A decision as the entries carry it (JSON-safe values)."""
    return {k: _plain(v) for k, v in asdict(d).items()}


@dataclass
class Criterion:
    criterion_id: str
    label: str
    status: str
    value: float | None
    unit: str | None
    threshold: float | None
    evidence_at: str | None
    reason: str | None
    # margin, near_flip, valid_until, missing_item, next_step, ... (CRITERION_DETAIL and after)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Entry:
    trial_id: str
    cohort_id: str
    patient_key: str
    mrn: str
    family_name: str | None
    given_name: str | None
    birth_date: str | None
    age_years: int | None
    candidate_status: str
    n_unknown: int
    is_new_in_marts: bool
    is_no_longer_eligible: bool
    previous_status: str | None
    first_eligible_on: str | None
    rescreen_by: str | None = None
    sole_missing_criterion: str | None = None
    sole_missing_next_step: str | None = None
    criteria: list[Criterion] = field(default_factory=list)
    decision: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return ", ".join(p for p in (self.family_name, self.given_name) if p) or "(no name)"

    @property
    def decision_unchanged(self) -> bool:
        """The current decision was made on the status the patient still has."""
        return bool(self.decision) and (
            (self.decision or {}).get("candidate_status") == self.candidate_status
        )

    @property
    def is_closed(self) -> bool:
        return self.decision_unchanged and (self.decision or {}).get("outcome") in CLOSING_OUTCOMES

    @property
    def is_new(self) -> bool:
        """New since the last run, unless a coordinator already decided on this status."""
        return self.is_new_in_marts and not self.decision_unchanged

    @property
    def next_steps(self) -> list[str]:
        """What to do next: the marts' next step of each criterion that is not met (unknown,
        review, not met) in criterion order, without repeats; else the reason of each unknown
        or review criterion."""
        steps: list[str] = []
        for c in self.criteria:
            if c.status == "met":
                continue
            step = c.extra.get("next_step") or (
                c.reason if c.status in ("unknown", "review") else None
            )
            if step and step not in steps:
                steps.append(str(step))
        return steps

    @property
    def missing_item(self) -> str | None:
        """The single missing item between the patient and ready_for_review
        (marts.screening_results.sole_missing_criterion), by its label and next step."""
        if not self.sole_missing_criterion:
            return None
        label = next(
            (c.label for c in self.criteria if c.criterion_id == self.sole_missing_criterion),
            self.sole_missing_criterion,
        )
        step = self.sole_missing_next_step
        return f"{label} ({step})" if step else label

    def sort_key(self) -> tuple[Any, ...]:
        return (
            self.is_no_longer_eligible,
            self.is_closed,
            READINESS.get(self.candidate_status, 3),
            self.n_unknown,
            self.rescreen_by or "9999-12-31",
            self.mrn,
        )


@dataclass
class Worklist:
    run_id: str
    screening_date: str | None
    built_at: str
    entries: list[Entry]
    # (trial_id, cohort_id) -> candidates not listed because they declined research contact
    opted_out: dict[str, int] = field(default_factory=dict)
    opt_out_source: str = ""
    extra_columns: list[str] = field(default_factory=list)

    def cohorts(self) -> list[tuple[str, str]]:
        keys = {(e.trial_id, e.cohort_id) for e in self.entries}
        keys |= {tuple(k.split("/", 1)) for k in self.opted_out}  # type: ignore[misc]
        return sorted(keys)

    def for_cohort(self, trial_id: str, cohort_id: str) -> list[Entry]:
        return sorted(
            (e for e in self.entries if (e.trial_id, e.cohort_id) == (trial_id, cohort_id)),
            key=Entry.sort_key,
        )

    def for_trial(self, trial_id: str | None) -> list[Entry]:
        return [
            e for t, c in self.cohorts() if trial_id in (None, t) for e in self.for_cohort(t, c)
        ]

    def apply(self, decisions: dict[tuple[str, str, str], Decision]) -> Worklist:
        """Attach each patient's current decision (who, when, outcome, reason)."""
        for e in self.entries:
            d = decisions.get((e.trial_id, e.cohort_id, e.mrn))
            e.decision = None if d is None else decision_dict(d)
        return self

    # --- the reading interface Snapshot shares (render, export, mark) ------------------
    def ordered(
        self, trial_id: str, cohort_id: str, criteria_limit: int | None = None
    ) -> Iterator[Entry]:
        return iter(self.for_cohort(trial_id, cohort_id))

    def find(self, trial_id: str, cohort_id: str, mrn: str) -> Entry | None:
        return next(
            (
                e
                for e in self.entries
                if (e.trial_id, e.cohort_id, e.mrn) == (trial_id, cohort_id, mrn)
            ),
            None,
        )

    def rows(self, trial_id: str | None = None) -> int:
        return sum(len(e.criteria) for e in self.entries if trial_id in (None, e.trial_id))


def worklist_columns(wh: Warehouse) -> tuple[list[str], list[str]]:
    """The columns read from restricted.worklist, and the extra ones among them (kept per
    criterion in ``Criterion.extra``, with any column a later release adds)."""
    present = wh.column_names(WORKLIST_TABLE)
    if not present:
        raise LookupError("restricted.worklist does not exist: no run has published one yet")
    missing = [
        c for c in PATIENT_COLUMNS + CRITERION_COLUMNS + CRITERION_DETAIL if c not in present
    ]
    if missing:
        raise LookupError(f"restricted.worklist lacks {', '.join(missing)}: rebuild it")
    extra = [c for c in present if c not in PATIENT_COLUMNS + CRITERION_COLUMNS]
    return list(PATIENT_COLUMNS + CRITERION_COLUMNS) + extra, extra


_ISO = "%Y-%m-%dT%H:%M:%S"  # datetime.isoformat() without the microseconds


def _plain_series(series: pl.Series) -> pl.Series:
    """:func:`_plain` of each value, a column at a time: dates and timestamps as their
    ``isoformat()``, decimals as float; a column of any other type the warehouse gives as
    Python values (``pl.Object``, Warehouse.stream_frames) through :func:`_plain` itself."""
    dtype = series.dtype
    if dtype == pl.Date:
        return series.dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        # datetime.isoformat(): the microseconds only when there are some
        whole, fraction = series.dt.strftime(_ISO), series.dt.strftime(_ISO + "%.6f")
        return fraction.zip_with(series.dt.microsecond() != 0, whole)
    if isinstance(dtype, pl.Decimal):
        # float(Decimal) reads the decimal's text, correctly rounded; so does this
        return series.cast(pl.String).cast(pl.Float64)
    if _typed(dtype):
        return series
    values = [_plain(v) for v in series.to_list()]
    try:  # PostgreSQL's numeric: floats now
        plain = pl.Series(series.name, values, strict=True)
    except Exception:  # text and numbers in one column (a value float() reads and one not)
        plain = None
    if plain is not None and _typed(plain.dtype):
        return plain
    return pl.Series(series.name, values, dtype=pl.Object)


def _typed(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype in (pl.String, pl.Boolean, pl.Null)


def plain_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Every value of ``frame`` as :func:`_plain` makes it (JSON-safe), without a Python
    object per value."""
    return pl.DataFrame([_plain_series(s) for s in frame.iter_columns()])


# Entry's fields from a plain restricted.worklist frame (an entry's first row), with the
# conversions Entry's types need; the criterion's in criterion_values
ENTRY_VALUES: dict[str, pl.Expr] = {
    **{
        f: pl.col(f)
        for f in PATIENT_COLUMNS
        if f not in ("run_id", "screening_date", "age_years", "n_unknown", "is_new")
    },
    "age_years": pl.col("age_years").cast(pl.Int64),
    "n_unknown": pl.col("n_unknown").cast(pl.Int64).fill_null(0),
    "is_new_in_marts": pl.col("is_new").cast(pl.Boolean).fill_null(False),
    "is_no_longer_eligible": pl.col("is_no_longer_eligible").cast(pl.Boolean).fill_null(False),
}


def criterion_values(extra: Sequence[str]) -> dict[str, pl.Expr]:
    """Criterion's fields from a plain restricted.worklist frame (one per row), then the
    extra columns by their own names."""
    label = pl.col("criterion_label")
    return {
        "criterion_id": pl.col("criterion_id"),
        "label": pl.when(label.is_null() | (label == ""))
        .then(pl.col("criterion_id"))
        .otherwise(label),
        "status": pl.col("criterion_status"),
        "value": pl.col("value_numeric"),
        "unit": pl.col("value_unit"),
        "threshold": pl.col("threshold"),
        "evidence_at": pl.col("evidence_at"),
        "reason": pl.col("reason"),
        **{x: pl.col(x) for x in extra},
    }


def read_frames(wh: Warehouse, rows: int = STREAM_ROWS) -> tuple[list[str], Iterator[pl.DataFrame]]:
    """The published restricted.worklist (opted-out patients already gone) in plain frames of
    at most ``rows`` rows (:func:`plain_frame`), streamed from the warehouse in the order of
    its entries and criteria (an entry may continue in the next frame); with the extra
    column names."""
    columns, extra = worklist_columns(wh)
    frames = wh.stream_frames(
        f"select {', '.join(columns)} from {WORKLIST_TABLE} "
        "order by trial_id, cohort_id, mrn, patient_key, criterion_ordinal",
        rows,
    )
    return extra, (plain_frame(f) for f in frames)
