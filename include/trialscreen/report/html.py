"""The screening report: one self-contained static HTML page per run.

``write_report`` reads the marts and the audit tables (native clients, aggregates only) and
writes ``<reports_dir>/<run_id>/report.html``, a copy in ``<reports_dir>/latest/report.html``
and ``<reports_dir>/index.html`` listing every run's report. Charts are inline SVG generated
here; CSS is inline; there is no script and nothing is fetched from the network.

What is shown: the run header; per trial and cohort the attrition funnel
(``marts.screening_funnel``), criterion outcomes (``marts.criterion_evaluations``) and
candidate counts; feed volumes over recent runs and freshness (``audit.feed_counts``);
quarantine counts and top errors (``quarantine.records``: the error text only, never the
payload or the file name); unit/plausibility issues (``intermediate.int_observations``, when
built); and the quality-gate outcome with a link to the Data Docs.

PHI: every query aggregates or selects non-identifying columns; no MRN, name, birth date,
source file name or raw payload is read. Every text is passed through ``html.escape``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from trialscreen.validate import ValidationOutcome, query_frame
from trialscreen.warehouse import Warehouse

RECENT_RUNS = 10
STATUS_COLORS = {
    "met": "#2e7d32",
    "not_met": "#c62828",
    "unknown": "#f9a825",
    "review": "#1565c0",
}
VOLUME_COLORS = {
    "loaded": "#2e7d32",
    "duplicates_skipped": "#90a4ae",
    "quarantined": "#c62828",
}
E = html.escape


def _id(*parts: object) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_-]+", "_", str(p)) for p in parts)


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


# --------------------------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------------------------
def _svg_text(x: float, y: float, text: str, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{E(text)}</text>'


def funnel_svg(trial: str, cohort: str, steps: pl.DataFrame) -> str:
    """Horizontal attrition bars: screened, then patients remaining after each criterion."""
    rows = steps.sort("ordinal").to_dicts()
    screened = max((r["patients_screened"] or 0 for r in rows), default=0)
    label_w, bar_w, row_h = 190, 460, 24
    height = (len(rows) + 1) * row_h + 10
    parts = [
        f'<svg id="{_id("funnel", trial, cohort)}" class="chart" role="img" '
        f'width="{label_w + bar_w + 150}" height="{height}" '
        f'aria-label="{E(f"Attrition funnel {trial} {cohort}")}">'
    ]
    bars = [("patients screened", screened, 0)] + [
        (r["criterion_id"], r["patients_remaining"] or 0, r["patients_removed"] or 0) for r in rows
    ]
    for i, (label, remaining, removed) in enumerate(bars):
        y = 5 + i * row_h
        width = bar_w * remaining / screened if screened else 0
        parts.append(_svg_text(label_w - 8, y + 16, label, "end"))
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" '
            f'fill="{"#546e7a" if i == 0 else "#26a69a"}">'
            f"<title>{E(f'{label}: {remaining} remaining')}</title></rect>"
        )
        note = f"{remaining}" + (f"  (−{removed})" if removed else "")
        parts.append(_svg_text(label_w + width + 6, y + 16, note, cls="num"))
    parts.append("</svg>")
    return "".join(parts)


def outcomes_svg(trial: str, cohort: str, frame: pl.DataFrame, order: list[str]) -> str:
    """Stacked horizontal bars: met / not_met / unknown / review per criterion."""
    rank = {c: i for i, c in enumerate(order)}
    rows = sorted(
        frame.to_dicts(), key=lambda r: (rank.get(r["criterion_id"], 10**6), r["criterion_id"])
    )
    label_w, bar_w, row_h = 190, 460, 22
    height = len(rows) * row_h + 34
    parts = [
        f'<svg id="{_id("criteria", trial, cohort)}" class="chart" role="img" '
        f'width="{label_w + bar_w + 20}" height="{height}" '
        f'aria-label="{E(f"Criterion outcomes {trial} {cohort}")}">'
    ]
    for i, row in enumerate(rows):
        y = 4 + i * row_h
        total = sum(row[s] or 0 for s in STATUS_COLORS)
        parts.append(_svg_text(label_w - 8, y + 15, row["criterion_id"], "end"))
        x = float(label_w)
        for status, color in STATUS_COLORS.items():
            n = row[status] or 0
            if not n or not total:
                continue
            w = bar_w * n / total
            tip = E(f"{row['criterion_id']} {status}: {n}")
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}" '
                f'fill="{color}"><title>{tip}</title></rect>'
            )
            if w > 22:
                parts.append(_svg_text(x + w / 2, y + 15, str(n), "middle", "inbar"))
            x += w
    y = len(rows) * row_h + 14
    x = float(label_w)
    for status, color in STATUS_COLORS.items():
        parts.append(f'<rect x="{x:.0f}" y="{y}" width="12" height="12" fill="{color}"/>')
        parts.append(_svg_text(x + 16, y + 11, status))
        x += 95
    parts.append("</svg>")
    return "".join(parts)


def volume_svg(feed: str, frame: pl.DataFrame) -> str:
    """One small multiple: per run, loaded + duplicates + quarantined stacked (= records_in)."""
    rows = frame.to_dicts()[-RECENT_RUNS:]
    width, height, pad_b, pad_t = 260, 130, 18, 16
    top = max((r["records_in"] or 0 for r in rows), default=0) or 1
    bar_slot = (width - 10) / max(len(rows), 1)
    parts = [
        f'<svg id="{_id("feed-volume", feed)}" class="chart small" role="img" width="{width}" '
        f'height="{height}" aria-label="{E(f"Records per run, {feed} feed")}">',
        _svg_text(4, 12, f"{feed} (max {top} records/run)", cls="title"),
    ]
    usable = height - pad_b - pad_t
    for i, row in enumerate(rows):
        x = 5 + i * bar_slot
        y = float(height - pad_b)
        for part, color in VOLUME_COLORS.items():
            n = row[part] or 0
            h = usable * n / top
            y -= h
            if n:
                tip = E(f"{row['run_id']}: {part} {n} of {row['records_in']}")
                parts.append(
                    f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{max(bar_slot - 4, 1):.1f}" '
                    f'height="{h:.1f}" fill="{color}"><title>{tip}</title></rect>'
                )
        if i == len(rows) - 1:
            parts.append(_svg_text(x + bar_slot / 2, height - 4, "latest", "middle", "axis"))
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#263238;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px}
header .meta span{margin-right:22px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600}
.ok{background:#2e7d32;color:#fff}.fail{background:#c62828;color:#fff}.warn{background:#f9a825;color:#222}
.other{background:#78909c;color:#fff}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0}
th,td{border-bottom:1px solid #eee;padding:3px 10px;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #e0e0e0;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px}
.chart text{font-size:12px;fill:#333}.chart text.inbar{fill:#fff;font-size:11px}
.chart text.title{font-weight:600}.chart text.axis{fill:#777;font-size:10px}
.multiples{display:flex;flex-wrap:wrap;gap:10px}
.muted{color:#777}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def _table(frame: pl.DataFrame, numeric: set[str] | None = None, table_id: str = "") -> str:
    numeric = numeric or {c for c, t in frame.schema.items() if t.is_numeric()}
    tid = f' id="{E(table_id)}"' if table_id else ""
    head = "".join(f'<th class="{"n" if c in numeric else ""}">{E(c)}</th>' for c in frame.columns)
    body = []
    for row in frame.iter_rows():
        cells = "".join(
            f'<td class="{"n" if c in numeric else ""}">{E("" if v is None else str(v))}</td>'
            for c, v in zip(frame.columns, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _status_badge(status: str) -> str:
    klass = {"published": "ok", "failed": "fail", "running": "warn"}.get(status, "other")
    return f'<span class="badge {klass}">{E(status)}</span>'


def _cohort_sections(data: ReportData) -> str:
    keys: set[tuple[str, str]] = set()
    for frame in (data.funnel, data.outcomes, data.candidates):
        if frame is not None and frame.height:
            keys |= {(r[0], r[1]) for r in frame.select("trial_id", "cohort_id").iter_rows()}
    if not keys:
        return '<section><h2>Screening</h2><p class="muted">No marts yet.</p></section>'
    out = []
    for trial, cohort in sorted(keys):
        sid = _id("cohort", trial, cohort)
        parts = [f'<section id="{sid}"><h2>{E(trial)} · cohort {E(cohort)}</h2>']

        def pick(
            frame: pl.DataFrame | None, trial: str = trial, cohort: str = cohort
        ) -> pl.DataFrame | None:
            if frame is None:
                return None
            return frame.filter((pl.col("trial_id") == trial) & (pl.col("cohort_id") == cohort))

        candidates, new, funnel, outcomes = (
            pick(data.candidates),
            pick(data.new_candidates),
            pick(data.funnel),
            pick(data.outcomes),
        )
        if candidates is not None and candidates.height:
            counts = dict(candidates.select("candidate_status", "patients").iter_rows())
            n_new = (
                int(new.get_column("new_candidates").sum()) if new is not None and new.height else 0
            )
            cards = [
                ("patients screened", sum(counts.values())),
                ("ready for review", counts.get("ready_for_review", 0)),
                ("missing data", counts.get("missing_data", 0)),
                ("ineligible", counts.get("ineligible", 0)),
                ("newly eligible", n_new),
            ]
            parts.append(
                f'<div class="cards" id="{_id("candidates", trial, cohort)}">'
                + "".join(
                    f'<div class="card" data-metric="{_id(label)}"><b>{int(n)}</b>{E(label)}</div>'
                    for label, n in cards
                )
                + "</div>"
            )
        order: list[str] = []
        if funnel is not None and funnel.height:
            order = funnel.sort("ordinal").get_column("criterion_id").to_list()
            parts.append("<h3>Attrition (patients remaining after each criterion)</h3>")
            parts.append(funnel_svg(trial, cohort, funnel))
            parts.append(
                '<p class="muted">Only <i>not_met</i> removes a patient; unknown and review '
                "never do.</p>"
            )
        if outcomes is not None and outcomes.height:
            parts.append("<h3>Criterion outcomes</h3>")
            parts.append(outcomes_svg(trial, cohort, outcomes, order))
        parts.append("</section>")
        out.append("".join(parts))
    return "".join(out)


def _feeds_section(data: ReportData) -> str:
    parts = ['<section id="feeds"><h2>Feeds: volumes and freshness</h2>']
    if data.volumes is None or not data.volumes.height:
        parts.append('<p class="muted">No feed counts recorded.</p></section>')
        return "".join(parts)
    legend = "".join(
        f'<span><i style="background:{c}"></i>{E(k)}</span>' for k, c in VOLUME_COLORS.items()
    )
    parts.append(f'<p class="legend">Records per run (last {RECENT_RUNS}): {legend}</p>')
    parts.append('<div class="multiples">')
    for feed in sorted(set(data.volumes.get_column("feed").to_list())):
        parts.append(volume_svg(feed, data.volumes.filter(pl.col("feed") == feed)))
    parts.append("</div>")
    if data.freshness is not None and data.freshness.height:
        rows = []
        for row in data.freshness.to_dicts():
            latest = row["latest_record_at"]
            age = ""
            if isinstance(latest, datetime) and data.screening_date:
                age = str((data.screening_date - latest.date()).days)
            rows.append(
                {
                    "feed": row["feed"],
                    "latest_record_at": str(latest) if latest else "never",
                    "days_before_screening_date": age,
                    "records_this_run": row["records_this_run"],
                }
            )
        parts.append("<h3>Freshness</h3>")
        parts.append(
            _table(
                pl.DataFrame(
                    rows,
                    schema={
                        "feed": pl.String,
                        "latest_record_at": pl.String,
                        "days_before_screening_date": pl.String,
                        "records_this_run": pl.Int64,
                    },
                ),
                {"days_before_screening_date", "records_this_run"},
                "freshness",
            )
        )
    parts.append("</section>")
    return "".join(parts)


def _quarantine_section(data: ReportData) -> str:
    parts = ['<section id="quarantine"><h2>Quarantine (this run)</h2>']
    q = data.quarantine
    if q is None or not q.height:
        parts.append('<p class="muted">Nothing quarantined in this run.</p></section>')
        return "".join(parts)
    per_feed = q.group_by("feed").agg(pl.col("records").sum()).sort("feed")
    parts.append(_table(per_feed, {"records"}, "quarantine-per-feed"))
    parts.append("<h3>Top errors</h3>")
    parts.append(_table(q.head(15), {"records"}, "quarantine-errors"))
    parts.append('<p class="muted">Error texts only; payloads stay in quarantine.records.</p>')
    parts.append("</section>")
    return "".join(parts)


def _issues_section(data: ReportData) -> str:
    parts = ['<section id="value-issues"><h2>Unit and plausibility issues</h2>']
    if data.value_issues is None:
        parts.append('<p class="muted">intermediate.int_observations not built.</p></section>')
    elif not data.value_issues.height:
        parts.append('<p class="muted">No flagged results.</p></section>')
    else:
        parts.append(_table(data.value_issues, {"results"}, "value-issues-table"))
        parts.append(
            '<p class="muted">Flagged results are kept but never used as values; a flagged '
            "latest result makes its criterion <i>unknown</i>.</p></section>"
        )
    return "".join(parts)


def _unmapped_section(data: ReportData) -> str:
    """The top observation codes no seed maps (marts.dq_unmapped_codes): codes and counts."""
    parts = ['<section id="unmapped-codes"><h2>Unmapped observation codes</h2>']
    if data.unmapped_codes is None:
        parts.append('<p class="muted">marts.dq_unmapped_codes not built.</p></section>')
    elif not data.unmapped_codes.height:
        parts.append('<p class="muted">Every observation code is mapped or ignored.</p></section>')
    else:
        parts.append(_table(data.unmapped_codes, {"results"}, "unmapped-codes-table"))
        parts.append(
            f'<p class="muted">The {UNMAPPED_TOP} most frequent codes that map to no analyte '
            "(seeds loinc_analytes, local_lab_codes) and are not on seed "
            "ignored_observation_codes; their results are not screened.</p></section>"
        )
    return "".join(parts)


def _validation_section(data: ReportData, docs_href: str | None) -> str:
    v = data.validation
    parts = ['<section id="validation"><h2>Quality gate</h2>']
    if v is None:
        parts.append('<p class="muted">No validation result recorded for this run.</p>')
    else:
        badge = (
            '<span class="badge ok">passed</span>'
            if v.success
            else ('<span class="badge fail">failed</span>')
        )
        parts.append(
            f"<p>{badge} {len(v.blocking_failures)} blocking failure(s), "
            f"{len(v.warnings)} warning(s), {int(v.expectations_evaluated)} expectations "
            f"({E(', '.join(v.suites))}).</p>"
        )
        cols = ["suite", "asset", "expectation", "column", "observed"]
        for title, items, tid in (
            ("Blocking failures", v.blocking_failures, "validation-blocking"),
            ("Warnings", v.warnings, "validation-warnings"),
        ):
            if items:
                parts.append(f"<h3>{title}</h3>")
                frame = pl.DataFrame(
                    [{c: str(i.get(c) or "") for c in cols} for i in items],
                    schema={c: pl.String for c in cols},
                )
                parts.append(_table(frame, set(), tid))
    if docs_href:
        parts.append(f'<p><a id="data-docs-link" href="{E(docs_href)}">Data Docs</a></p>')
    parts.append("</section>")
    return "".join(parts)


def render(data: ReportData, docs_href: str | None = None) -> str:
    """The report page as a string."""
    status = data.status
    if data.validation is not None and status in ("unknown", "running"):
        status = "validated" if data.validation.success else "validation failed"
    started = data.run_row.get("started_at")
    finished = data.run_row.get("finished_at")
    meta = [
        f"<span>run <b>{E(data.run_id)}</b></span>",
        f"<span>screening date <b>{E(str(data.screening_date or '?'))}</b></span>",
        f"<span>status {_status_badge(status)}</span>",
    ]
    if data.run_row.get("trial_ids"):
        meta.append(f"<span>trials {E(str(data.run_row['trial_ids']))}</span>")
    if started:
        meta.append(f"<span>started {E(str(started))}</span>")
    if finished:
        meta.append(f"<span>finished {E(str(finished))}</span>")
    note = ""
    if data.marts_run_id and data.marts_run_id != data.run_id:
        note = (
            f'<p class="muted" id="marts-run-note">The marts shown were published by run '
            f"{E(data.marts_run_id)}.</p>"
        )
    if data.run_row.get("message"):
        note += f'<p class="muted">{E(str(data.run_row["message"]))}</p>'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>TrialScreen report {E(data.run_id)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body>"
        f'<header><h1>TrialScreen screening report</h1><div class="meta">{"".join(meta)}</div>'
        "</header><main>"
        + note
        + _validation_section(data, docs_href)
        + _cohort_sections(data)
        + _feeds_section(data)
        + _quarantine_section(data)
        + _issues_section(data)
        + _unmapped_section(data)
        + '<p class="muted">Pseudonymized aggregates only; generated by trialscreen.report.</p>'
        + "</main></body></html>"
    )


def _write_index(reports_dir: Path) -> Path:
    runs = []
    for child in sorted(reports_dir.iterdir(), reverse=True):
        meta = child / "report.json"
        if child.name == "latest" or not meta.is_file():
            continue
        info = json.loads(meta.read_text())
        runs.append(
            f'<tr><td><a href="{E(child.name)}/report.html">{E(child.name)}</a></td>'
            f"<td>{E(str(info.get('screening_date') or ''))}</td>"
            f"<td>{_status_badge(str(info.get('status') or 'unknown'))}</td></tr>"
        )
    docs = reports_dir / "data_docs" / "gx" / "uncommitted" / "data_docs" / "local_site"
    docs_link = (
        f'<p><a href="{E((docs / "index.html").relative_to(reports_dir).as_posix())}">'
        "Data Docs</a></p>"
        if (docs / "index.html").is_file()
        else ""
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>TrialScreen reports</title><style>{CSS}</style></head><body>"
        "<header><h1>TrialScreen reports</h1></header><main><section>"
        '<p><a href="latest/report.html">Latest report</a></p>'
        + docs_link
        + '<table id="runs"><thead><tr><th>run</th><th>screening date</th><th>status</th>'
        "</tr></thead><tbody>" + "".join(runs) + "</tbody></table></section></main></body></html>"
    )
    index = reports_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def write_report(
    warehouse_url: str,
    reports_dir: Path,
    run_id: str,
    validation: ValidationOutcome | None = None,
) -> Path:
    """Write ``<reports_dir>/<run_id>/report.html`` (+ ``latest/`` and ``index.html``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.:+-]{1,128}", run_id):
        raise ValueError(f"run_id: '{run_id}' is not a safe directory name")
    reports_dir = Path(reports_dir)
    with Warehouse.connect(warehouse_url) as wh:
        data = collect(wh, run_id)
    if validation is not None:
        data.validation = validation
    run_dir = reports_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    docs_index: Path | None = None
    if data.validation is not None and data.validation.data_docs_index is not None:
        docs_index = Path(data.validation.data_docs_index)
    else:
        candidate = reports_dir / "data_docs/gx/uncommitted/data_docs/local_site/index.html"
        docs_index = candidate if candidate.is_file() else None
    href = os.path.relpath(docs_index, run_dir) if docs_index else None
    report = run_dir / "report.html"
    report.write_text(render(data, href), encoding="utf-8")
    (run_dir / "report.json").write_text(
        json.dumps(
            {
                "run_id": run_id,
                "screening_date": str(data.screening_date) if data.screening_date else None,
                "status": data.status,
                "validation_success": data.validation.success if data.validation else None,
            }
        ),
        encoding="utf-8",
    )
    latest = reports_dir / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(report, latest / "report.html")  # same depth: relative links still work
    _write_index(reports_dir)
    return report
