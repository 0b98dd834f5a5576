"""What the oracle answers for one patient: the trial's criteria per cohort, the derived
value columns, the ``Outcome`` (statuses, reasons, values) with the ``Coordination`` beside
each status, and the candidate status of a cohort."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

TRIAL_ID = "axiom"
CRITERIA: dict[str, tuple[str, ...]] = {
    "safety_run_in": (
        "age",
        "diagnosis_sts",
        "measurable_disease",
        "performance_status",
        "anc",
        "platelets",
        "hemoglobin",
        "bilirubin",
        "ast",
        "alt",
        "renal",
        "albumin",
        "sodium",
        "hiv",
        "informed_consent",
        "contraception",
        "swallow_pills",
    ),
    "asps": (
        "age",
        "diagnosis_asps",
        "ici_refractory_progression",
        "measurable_disease",
        "performance_status",
        "anc",
        "platelets",
        "hemoglobin",
        "bilirubin",
        "ast",
        "alt",
        "renal",
        "albumin",
        "sodium",
        "hiv",
        "research_biopsy",
        "informed_consent",
        "contraception",
        "swallow_pills",
    ),
}
VALUE_COLUMNS = (
    "age_years",
    "ecog",
    "karnofsky",
    "anc",
    "platelets",
    "hemoglobin",
    "bilirubin_x_uln",
    "ast_x_uln",
    "alt_x_uln",
    "creatinine_x_uln",
    "crcl_ml_min",
    "crcl_ml_min_1_73m2",
    "albumin",
    "sodium",
)


@dataclass(frozen=True)
class Coordination:
    """What a coordinator reads beside a status (issue 12; docs/decisions.md "Margins, near
    flips and valid_until"): the last screening date the evidence counts, the margin to the
    limit in the criterion's own direction (positive = meets), and for an unknown the item
    that would decide it (a key of seed criterion_next_steps)."""

    valid_until: date | None = None
    margin: float | None = None
    missing_item: str | None = None


@dataclass
class Outcome:
    criteria: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # cohort, id, status, reason
    candidates: dict[str, str] = field(default_factory=dict)
    values: dict[str, float | int | None] = field(default_factory=dict)
    coordination: dict[str, Coordination] = field(default_factory=dict)  # by criterion id
    rescreen_by: dict[str, date | None] = field(default_factory=dict)  # by cohort
    sole_missing: dict[str, str | None] = field(default_factory=dict)  # by cohort


def candidate_status(statuses: Iterable[str]) -> str:
    """Candidate status: any not_met -> ineligible; else any unknown -> missing_data; else ready."""
    s = list(statuses)
    if "not_met" in s:
        return "ineligible"
    if "unknown" in s:
        return "missing_data"
    return "ready_for_review"
