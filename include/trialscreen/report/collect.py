"""The report's data: small aggregate frames read from the marts and the audit tables
(native clients; no identifying column is read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from trialscreen.validate import ValidationOutcome, query_frame
from trialscreen.warehouse import Warehouse


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
@dataclass
class ReportData:
    run_id: str
    screening_date: date | None = None
    status: str = "unknown"
    run_row: dict[str, Any] = field(default_factory=dict)
    marts_run_id: str | None = None
    funnel: pl.DataFrame | None = None
    outcomes: pl.DataFrame | None = None
    candidates: pl.DataFrame | None = None
    new_candidates: pl.DataFrame | None = None
    volumes: pl.DataFrame | None = None
    freshness: pl.DataFrame | None = None
    quarantine: pl.DataFrame | None = None
    value_issues: pl.DataFrame | None = None
    unmapped_codes: pl.DataFrame | None = None  # top codes mapped to no analyte, per feed
    validation: ValidationOutcome | None = None


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


UNMAPPED_TOP = 20  # unmapped observation codes listed in the report


def _read(wh: Warehouse, table: str, sql: str) -> pl.DataFrame | None:
    return query_frame(wh, sql) if wh.table_exists(table) else None


def collect(wh: Warehouse, run_id: str) -> ReportData:
    """Everything the page shows, as small aggregate frames (None: table absent)."""
    data = ReportData(run_id=run_id)
    rid = _lit(run_id)
    runs = _read(
        wh,
        "audit.pipeline_runs",
        "select run_id, screening_date, status, trial_ids, started_at, finished_at, "
        f"validation_result, message from audit.pipeline_runs where run_id = {rid}",
    )
    if runs is not None and runs.height:
        data.run_row = runs.row(0, named=True)
        data.screening_date = data.run_row["screening_date"]
        data.status = str(data.run_row["status"] or "unknown")
        if data.run_row.get("validation_result"):
            try:
                data.validation = ValidationOutcome.from_json(data.run_row["validation_result"])
            except (ValueError, KeyError, TypeError):
                data.validation = None

    # the marts hold one run; say so when it is not this one
    if wh.table_exists("marts.screening_results"):
        marts_runs = query_frame(
            wh, "select distinct run_id, screening_date from marts.screening_results"
        )
        if marts_runs.height:
            data.marts_run_id = str(marts_runs.get_column("run_id")[0])
            if data.screening_date is None:
                data.screening_date = marts_runs.get_column("screening_date")[0]
        data.candidates = query_frame(
            wh,
            "select trial_id, cohort_id, candidate_status, count(*) as patients "
            "from marts.screening_results group by trial_id, cohort_id, candidate_status "
            "order by trial_id, cohort_id, candidate_status",
        )
    data.new_candidates = _read(
        wh,
        "marts.eligible_candidates",
        "select trial_id, cohort_id, candidate_status, "
        "sum(case when is_new then 1 else 0 end) as new_candidates, count(*) as candidates "
        "from marts.eligible_candidates group by trial_id, cohort_id, candidate_status",
    )
    data.funnel = _read(
        wh,
        "marts.screening_funnel",
        "select trial_id, cohort_id, ordinal, criterion_id, patients_screened, "
        "patients_removed, patients_remaining from marts.screening_funnel "
        "order by trial_id, cohort_id, ordinal",
    )
    data.outcomes = _read(
        wh,
        "marts.criterion_evaluations",
        "select trial_id, cohort_id, criterion_id, "
        "sum(case when status = 'met' then 1 else 0 end) as met, "
        "sum(case when status = 'not_met' then 1 else 0 end) as not_met, "
        "sum(case when status = 'unknown' then 1 else 0 end) as unknown, "
        "sum(case when status = 'review' then 1 else 0 end) as review "
        "from marts.criterion_evaluations group by trial_id, cohort_id, criterion_id",
    )
    if wh.table_exists("audit.feed_counts"):
        order = "max(finished_at)"
        data.volumes = query_frame(
            wh,
            "select run_id, feed, sum(records_in) as records_in, sum(loaded) as loaded, "
            "sum(duplicates_skipped) as duplicates_skipped, sum(quarantined) as quarantined, "
            f"{order} as finished_at from audit.feed_counts group by run_id, feed "
            "order by finished_at, run_id, feed",
        )
        data.freshness = query_frame(
            wh,
            "select feed, max(latest_record_at) as latest_record_at, "
            f"max(case when run_id = {rid} then records_in end) as records_this_run "
            "from audit.feed_counts group by feed order by feed",
        )
    data.quarantine = _read(
        wh,
        "quarantine.records",
        "select feed, scope, error, count(*) as records from quarantine.records "
        f"where run_id = {rid} group by feed, scope, error order by records desc, feed, error",
    )
    data.value_issues = _read(
        wh,
        "intermediate.int_observations",
        "select analyte, value_issue, count(*) as results from intermediate.int_observations "
        "where value_issue is not null group by analyte, value_issue "
        "order by results desc, analyte, value_issue",
    )
    data.unmapped_codes = _read(
        wh,
        "marts.dq_unmapped_codes",
        "select feed, code_system, code, observation_count as results from marts.dq_unmapped_codes "
        f"order by observation_count desc, feed, code_system, code limit {UNMAPPED_TOP}",
    )
    for name in (
        "candidates", "new_candidates", "funnel", "outcomes", "volumes", "quarantine",
        "unmapped_codes",
    ):  # fmt: skip
        frame = getattr(data, name)
        if frame is not None:  # DuckDB sums are HUGEINT/decimal: plain ints for display
            setattr(
                data,
                name,
                frame.with_columns(
                    pl.col(c).cast(pl.Int64)
                    for c, t in frame.schema.items()
                    if t.is_numeric() and c not in ("ordinal",)
                ),
            )
    return data
