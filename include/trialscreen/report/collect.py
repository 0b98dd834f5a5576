"""The report's data: small aggregate frames read from the marts and the audit tables
(native clients; no identifying column is read).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from trialscreen import schema, settings
from trialscreen.validate import ValidationOutcome, query_frame
from trialscreen.warehouse import Warehouse

RECENT_NIGHTS = 10  # nights of the feed-health dashboard and of the accrual table
LOW_FRACTION = 0.5  # a night below this share of the feed's trailing median is flagged
UNITS_TOP = 20  # unmapped unit spellings listed
# a unit spelling as sent (OBX-6, valueQuantity.unit, CSV unit): short, no spaces, unit
# characters only; anything else is not shown (it may be free text)
_UNIT_SHAPE = re.compile(r"[A-Za-z0-9%/*^.\[\]{}()'_µμ·+-]{1,24}")


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
    timezone: str = "UTC"  # the hospital's (settings.hospital_timezone): every time shown
    # feed health: one row per (feed, night) of the last RECENT_NIGHTS nights, zero-filled
    nights: pl.DataFrame | None = None
    unmapped_units: pl.DataFrame | None = None  # unit spellings no seed maps, with counts
    accrual: pl.DataFrame | None = None  # per trial, cohort, night: candidates, new, lost
    labels: dict[str, Any] = field(default_factory=dict)  # trial/cohort/criterion titles


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
    data.timezone = settings.hospital_timezone()
    if wh.table_exists("audit.feed_counts"):
        order = "max(finished_at)"
        data.volumes = query_frame(
            wh,
            "select run_id, feed, sum(records_in) as records_in, sum(loaded) as loaded, "
            "sum(duplicates_skipped) as duplicates_skipped, sum(quarantined) as quarantined, "
            f"{order} as finished_at from audit.feed_counts group by run_id, feed "
            "order by finished_at, run_id, feed",
        )
        data.nights = feed_nights(wh, data.volumes, data.screening_date, data.timezone)
    data.freshness = freshness(wh, run_id, data.screening_date)
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
    data.unmapped_units = unmapped_units(wh)
    data.accrual = accrual(wh, data.screening_date)
    data.labels = labels(wh)
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


# --------------------------------------------------------------------------------------------
# feed health
# --------------------------------------------------------------------------------------------
def local_date(value: datetime, zone: str) -> date:
    """The hospital-local date of a naive UTC timestamp (audit tables record UTC)."""
    return value.replace(tzinfo=UTC).astimezone(settings.hospital_zone(zone)).date()


def feed_nights(
    wh: Warehouse, volumes: pl.DataFrame, until: date | None, zone: str
) -> pl.DataFrame:
    """Records per feed and night over the last ``RECENT_NIGHTS`` nights up to ``until``.

    A night is a screening date of ``audit.pipeline_runs`` (an ingest without a run counts on
    the local date it finished); the runs of one night add up. Every feed that delivered in the
    window has a row for every night, zero when it delivered nothing, so an empty night is a
    bar of height zero with its date, not a missing bar. ``flag`` is ``no_records`` or
    ``low_volume`` when the night is below ``LOW_FRACTION`` of the median of the feed's
    earlier nights in the window (at least one, median above zero), else null.
    """
    columns = {
        "feed": pl.String,
        "night": pl.Date,
        "runs": pl.Int64,
        "records_in": pl.Int64,
        "loaded": pl.Int64,
        "duplicates_skipped": pl.Int64,
        "quarantined": pl.Int64,
        "trailing_median": pl.Float64,
        "flag": pl.String,
    }
    night_of: dict[str, date] = {}
    if wh.table_exists("audit.pipeline_runs"):
        for run, screening_date in wh.query(
            "select run_id, screening_date from audit.pipeline_runs"
        ):
            if screening_date is not None:
                night_of[str(run)] = screening_date
    for run, finished in volumes.select("run_id", "finished_at").iter_rows():
        if run not in night_of and isinstance(finished, datetime):
            night_of[run] = local_date(finished, zone)
    nights = sorted({n for n in night_of.values() if until is None or n <= until})
    nights = nights[-RECENT_NIGHTS:]
    if not nights:
        return pl.DataFrame(schema=columns)
    totals: dict[tuple[str, date], dict[str, int]] = {}
    runs: dict[date, set[str]] = {}
    for run, run_night in night_of.items():
        runs.setdefault(run_night, set()).add(run)
    parts = ("records_in", "loaded", "duplicates_skipped", "quarantined")
    for row in volumes.to_dicts():
        row_night = night_of.get(row["run_id"])
        if row_night is None or row_night not in nights:
            continue
        cell = totals.setdefault((row["feed"], row_night), dict.fromkeys(parts, 0))
        for part in parts:
            cell[part] += int(row[part] or 0)
    feeds = [f for f in schema.FEEDS if any(k[0] == f for k in totals)]
    feeds += sorted({k[0] for k in totals} - set(feeds))
    rows = []
    for feed in feeds:
        earlier: list[int] = []
        for night in nights:
            cell = totals.get((feed, night), dict.fromkeys(parts, 0))
            median = float(statistics.median(earlier)) if earlier else None
            flag = None
            if median and cell["records_in"] < LOW_FRACTION * median:
                flag = "no_records" if cell["records_in"] == 0 else "low_volume"
            rows.append(
                {
                    "feed": feed,
                    "night": night,
                    "runs": len(runs.get(night, ())),
                    **cell,
                    "trailing_median": median,
                    "flag": flag,
                }
            )
            earlier.append(cell["records_in"])
    return pl.DataFrame(rows, schema=columns)


def freshness(wh: Warehouse, run_id: str, screening_date: date | None) -> pl.DataFrame | None:
    """Per feed: the latest observation dated on or before the screening date, and how many
    observations are dated after it (future-dated: a clock or a test system, never fresh).

    Read from ``raw.<feed>_observations`` (``effective_at``, the sender's wall clock) and this
    run's ``records_in`` from ``audit.feed_counts``."""
    columns = {
        "feed": pl.String,
        "latest_record_on": pl.Date,
        "days_before_screening_date": pl.Int64,
        "future_dated": pl.Int64,
        "records_this_run": pl.Int64,
    }
    if screening_date is None:
        return None
    cutoff = f"cast('{(screening_date + timedelta(days=1)).isoformat()} 00:00:00' as timestamp)"
    this_run: dict[str, int] = {}
    if wh.table_exists("audit.feed_counts"):
        this_run = {
            str(f): int(n or 0)
            for f, n in wh.query(
                "select feed, sum(records_in) from audit.feed_counts "
                f"where run_id = {_lit(run_id)} group by feed"
            )
        }
    rows = []
    for feed in schema.FEEDS:
        table = f"raw.{schema.raw_table(feed, 'observations')}"
        if not wh.table_exists(table):
            if feed in this_run:
                rows.append({"feed": feed, "records_this_run": this_run[feed]})
            continue
        latest, future = wh.query(
            f"select max(case when effective_at < {cutoff} then effective_at end), "
            f"sum(case when effective_at >= {cutoff} then 1 else 0 end) from {table}"
        )[0]
        latest_on = latest.date() if isinstance(latest, datetime) else None
        rows.append(
            {
                "feed": feed,
                "latest_record_on": latest_on,
                "days_before_screening_date": (
                    (screening_date - latest_on).days if latest_on else None
                ),
                "future_dated": int(future or 0),
                "records_this_run": this_run.get(feed),
            }
        )
    return pl.DataFrame(rows, schema=columns)


def unmapped_units(wh: Warehouse) -> pl.DataFrame | None:
    """The unit spellings no seed converts (``value_issue = 'unmapped_unit'``), per feed and
    analyte, with counts. Only spellings shaped like a unit and not read out of a free-text
    value are shown; the others are counted under ``(not shown)``."""
    table = "intermediate.int_observations"
    if not wh.table_exists(table):
        return None
    present = set(query_frame(wh, f"select * from {table} where 1 = 0").columns)
    feed = "evidence_source" if "evidence_source" in present else "cast(null as varchar)"
    # a spelling found inside the value's text came from the text, not the unit field
    from_text = (
        "value_text is not null and position(lower(unit_raw) in lower(value_text)) > 0"
        if "value_text" in present
        else "false"
    )
    frame = query_frame(
        wh,
        f"select {feed} as feed, analyte, "
        f"case when {from_text} then null else unit_raw end as unit_as_sent, "
        f"count(*) as results from {table} where value_issue = 'unmapped_unit' "
        "group by 1, 2, 3",
    )
    frame = frame.with_columns(
        pl.when(pl.col("unit_as_sent").str.contains(f"^(?:{_UNIT_SHAPE.pattern})$"))
        .then(pl.col("unit_as_sent"))
        .otherwise(pl.lit("(not shown)"))
        .alias("unit_as_sent"),
        pl.col("results").cast(pl.Int64),
    )
    return (
        frame.group_by("feed", "analyte", "unit_as_sent")
        .agg(pl.col("results").sum())
        .sort(
            ["results", "feed", "analyte", "unit_as_sent"], descending=[True, False, False, False]
        )
        .head(UNITS_TOP)
    )


def accrual(wh: Warehouse, until: date | None) -> pl.DataFrame | None:
    """Candidates per trial, cohort and night over the last ``RECENT_NIGHTS`` nights of
    ``marts.screening_candidate_history``, with the patients newly eligible (a candidate
    tonight, not the night before) and no longer eligible (a candidate the night before, not
    tonight: ineligible now or no longer screened). The first night has no night before: its
    changes are null. When a night was run twice, its last run counts."""
    table = "marts.screening_candidate_history"
    if not wh.table_exists(table):
        return None
    bound = f"where screening_date <= cast('{until.isoformat()}' as date)" if until else ""
    sql = f"""
        with runs as (
            select run_id, screening_date, max(recorded_at) as recorded_at
            from {table} {bound} group by run_id, screening_date
        ),
        ranked as (
            select run_id, screening_date,
                row_number() over (
                    partition by screening_date order by recorded_at desc, run_id desc
                ) as last_first
            from runs
        ),
        kept as (
            select run_id, screening_date,
                dense_rank() over (order by screening_date desc) as nights_back
            from ranked where last_first = 1
        ),
        rows_ as (
            select h.trial_id, h.cohort_id, h.patient_key, k.nights_back,
                case when h.is_candidate then 1 else 0 end as candidate
            from {table} as h inner join kept as k on h.run_id = k.run_id
            where k.nights_back <= {RECENT_NIGHTS + 1}
        ),
        paired as (
            select
                coalesce(cur.trial_id, prev.trial_id) as trial_id,
                coalesce(cur.cohort_id, prev.cohort_id) as cohort_id,
                coalesce(cur.nights_back, prev.nights_back - 1) as nights_back,
                coalesce(cur.candidate, 0) as candidate,
                coalesce(prev.candidate, 0) as was_candidate
            from rows_ as cur
            full outer join rows_ as prev
                on cur.patient_key = prev.patient_key
                and cur.trial_id = prev.trial_id
                and cur.cohort_id = prev.cohort_id
                and prev.nights_back = cur.nights_back + 1
        )
        select p.trial_id, p.cohort_id, k.screening_date as night,
            sum(p.candidate) as candidates,
            sum(case when p.candidate = 1 and p.was_candidate = 0 then 1 else 0 end)
                as newly_eligible,
            sum(case when p.candidate = 0 and p.was_candidate = 1 then 1 else 0 end)
                as no_longer_eligible,
            max(case when k2.run_id is null then 0 else 1 end) as has_previous
        from paired as p
        inner join kept as k on p.nights_back = k.nights_back
        left join kept as k2 on k2.nights_back = p.nights_back + 1
        where p.nights_back between 1 and {RECENT_NIGHTS}
        group by p.trial_id, p.cohort_id, k.screening_date
        order by p.trial_id, p.cohort_id, k.screening_date
    """
    frame = query_frame(wh, sql)
    if not frame.height:
        return frame
    first = pl.col("has_previous").cast(pl.Int64) == 0
    return frame.with_columns(
        pl.col("candidates").cast(pl.Int64),
        pl.when(first)
        .then(None)
        .otherwise(pl.col("newly_eligible"))
        .cast(pl.Int64)
        .alias("newly_eligible"),
        pl.when(first)
        .then(None)
        .otherwise(pl.col("no_longer_eligible"))
        .cast(pl.Int64)
        .alias("no_longer_eligible"),
    ).drop("has_previous")


def labels(wh: Warehouse) -> dict[str, Any]:
    """Trial titles and NCT ids, cohort titles and criterion labels: from the run's trial
    configuration in the warehouse (``config.*``), else from the trial definition files."""
    out: dict[str, Any] = {"trials": {}, "cohorts": {}, "criteria": {}}
    if wh.table_exists("config.trials"):
        for trial, title, nct in wh.query("select trial_id, title, nct_id from config.trials"):
            out["trials"][trial] = {"title": title, "nct_id": nct}
        if wh.table_exists("config.trial_cohorts"):
            for trial, cohort, title in wh.query(
                "select trial_id, cohort_id, title from config.trial_cohorts"
            ):
                out["cohorts"][(trial, cohort)] = title
        if wh.table_exists("config.trial_criteria"):
            for trial, criterion, label in wh.query(
                "select distinct trial_id, criterion_id, label from config.trial_criteria"
            ):
                if label:
                    out["criteria"][(trial, criterion)] = label
        return out
    from trialscreen.trial import TrialDefinitionError, load_trial, trial_ids

    for trial in trial_ids():
        try:
            definition = load_trial(trial)
        except TrialDefinitionError:
            continue
        out["trials"][trial] = {"title": definition.title, "nct_id": definition.nct_id}
        for cohort in definition.cohorts:
            out["cohorts"][(trial, cohort.id)] = cohort.title
        for crit in definition.criteria:
            out["criteria"][(trial, crit.id)] = crit.label or crit.id
    return out
