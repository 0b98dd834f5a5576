"""The report page and the index of runs: assembly (escaped text, tables, sections) and
writing ``<reports_dir>/<run_id>/report.html``, ``latest/`` and ``index.html``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from trialscreen import settings
from trialscreen.report.charts import (
    VOLUME_COLORS,
    E,
    _id,
    funnel_svg,
    night_volume_svg,
    outcomes_svg,
)
from trialscreen.report.collect import (
    LOW_FRACTION,
    RECENT_NIGHTS,
    UNMAPPED_TOP,
    ReportData,
    collect,
)
from trialscreen.validate import ValidationOutcome
from trialscreen.warehouse import Warehouse

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
.chart text.zero,.chart text.flag{fill:#c62828;font-weight:700}
.flags li{color:#c62828}
tr.flagged td{background:#ffebee}
.nct{font-weight:400;font-size:14px;color:#555}
"""


def local_time(value: Any, zone: str) -> str:
    """A naive UTC timestamp of the audit tables in the hospital's time zone, zone named."""
    if not isinstance(value, datetime):
        return str(value)
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    local = aware.astimezone(settings.hospital_zone(zone))
    return local.strftime("%Y-%m-%d %H:%M %Z") + f" ({zone})"


def _trial_heading(data: ReportData, trial: str, cohort: str) -> str:
    info = data.labels.get("trials", {}).get(trial) or {}
    title = info.get("title") or trial
    nct = info.get("nct_id")
    cohort_title = data.labels.get("cohorts", {}).get((trial, cohort)) or f"cohort {cohort}"
    return (
        f"{E(title)} · {E(cohort_title)}"
        f' <span class="nct">{E(trial)}{" · " + E(nct) if nct else ""} · cohort {E(cohort)}</span>'
    )


def _with_labels(data: ReportData, trial: str, frame: pl.DataFrame | None) -> pl.DataFrame | None:
    """criterion_id replaced by the trial definition's label (the id when it has none)."""
    names = {c: label for (t, c), label in data.labels.get("criteria", {}).items() if t == trial}
    if frame is None or not names:
        return frame
    return frame.with_columns(pl.col("criterion_id").replace(names))


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
        parts = [f'<section id="{sid}"><h2>{_trial_heading(data, trial, cohort)}</h2>']

        def pick(
            frame: pl.DataFrame | None, trial: str = trial, cohort: str = cohort
        ) -> pl.DataFrame | None:
            if frame is None:
                return None
            return frame.filter((pl.col("trial_id") == trial) & (pl.col("cohort_id") == cohort))

        candidates, new, funnel, outcomes = (
            pick(data.candidates),
            pick(data.new_candidates),
            _with_labels(data, trial, pick(data.funnel)),
            _with_labels(data, trial, pick(data.outcomes)),
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
        accrual = pick(data.accrual)
        if accrual is not None and accrual.height:
            parts.append(f"<h3>Candidates per night (last {RECENT_NIGHTS} nights)</h3>")
            parts.append(
                _table(
                    accrual.select(
                        pl.col("night").cast(pl.String),
                        "candidates",
                        "newly_eligible",
                        "no_longer_eligible",
                    ),
                    {"candidates", "newly_eligible", "no_longer_eligible"},
                    _id("accrual", trial, cohort),
                )
            )
            parts.append(
                '<p class="muted">Candidates: ready for review or missing data. Newly eligible: '
                "a candidate that night and not the night before; no longer eligible: the "
                "reverse (ineligible now, or no longer screened). Empty on the first night.</p>"
            )
        parts.append("</section>")
        out.append("".join(parts))
    return "".join(out)


def _feeds_section(data: ReportData) -> str:
    parts = ['<section id="feeds"><h2>Feed health</h2>']
    nights = data.nights
    if nights is None or not nights.height:
        parts.append('<p class="muted">No feed counts recorded.</p>')
    else:
        legend = "".join(
            f'<span><i style="background:{c}"></i>{E(k)}</span>' for k, c in VOLUME_COLORS.items()
        )
        parts.append(
            f'<p class="legend">Records per night (last {RECENT_NIGHTS} nights): {legend}</p>'
        )
        flagged = nights.filter(pl.col("flag").is_not_null())
        if flagged.height:
            items = "".join(
                f'<li data-feed="{E(r["feed"])}" data-night="{E(str(r["night"]))}">'
                f"{E(r['feed'])}, {E(str(r['night']))}: "
                + ("no records" if r["flag"] == "no_records" else f"only {r['records_in']} records")
                + f" (trailing median {r['trailing_median']:g})</li>"
                for r in flagged.to_dicts()
            )
            parts.append(f'<ul class="flags" id="feed-flags">{items}</ul>')
        else:
            parts.append('<p id="feed-flags-none">No feed fell below its usual volume.</p>')
        parts.append('<div class="multiples">')
        for feed in nights.get_column("feed").unique(maintain_order=True).to_list():
            parts.append(night_volume_svg(feed, nights.filter(pl.col("feed") == feed)))
        parts.append("</div>")
        parts.append(
            f'<p class="muted">A night is flagged when the feed delivered less than '
            f"{LOW_FRACTION:.0%} of the median of its earlier nights shown (no records at all: "
            "an outage looks like this, not like a normal night).</p>"
        )
        parts.append("<details><summary>Per night</summary>")
        parts.append(_nights_table(nights))
        parts.append("</details>")
    if data.freshness is not None and data.freshness.height:
        parts.append("<h3>Freshness</h3>")
        parts.append(
            _table(
                data.freshness.with_columns(pl.col("latest_record_on").cast(pl.String)),
                {"days_before_screening_date", "future_dated", "records_this_run"},
                "freshness",
            )
        )
        parts.append(
            '<p class="muted">Latest observation dated on or before the screening date '
            f"({E(str(data.screening_date))}); observations dated after it are counted as "
            "future-dated and never make a feed look fresh.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _nights_table(nights: pl.DataFrame) -> str:
    head = "".join(f"<th>{E(c)}</th>" for c in nights.columns)
    body = []
    for row in nights.to_dicts():
        klass = ' class="flagged"' if row["flag"] else ""
        cells = "".join(
            f"<td>{E('' if v is None else (f'{v:g}' if isinstance(v, float) else str(v)))}</td>"
            for v in row.values()
        )
        body.append(f"<tr{klass}>{cells}</tr>")
    return (
        f'<table id="feed-nights-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


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
            "latest result makes its criterion <i>unknown</i>.</p>"
        )
        units = data.unmapped_units
        if units is not None and units.height:
            parts.append("<h3>Units no seed converts</h3>")
            parts.append(_table(units, {"results"}, "unmapped-units-table"))
            parts.append(
                '<p class="muted">Unit spellings as sent (add them to seed unit_aliases with '
                "their UCUM code); a spelling read out of a value's free text is not shown.</p>"
            )
        parts.append("</section>")
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
        meta.append(f"<span>started {E(local_time(started, data.timezone))}</span>")
    if finished:
        meta.append(f"<span>finished {E(local_time(finished, data.timezone))}</span>")
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


def write_index(reports_dir: Path) -> Path:
    """``<reports_dir>/index.html``: every run's report, the Data Docs and the dbt docs (when
    built; call again after building them)."""
    reports_dir = Path(reports_dir)
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
        f'<p><a id="data-docs-index-link" '
        f'href="{E((docs / "index.html").relative_to(reports_dir).as_posix())}">'
        "Data Docs</a> (quality gate: every expectation and its result)</p>"
        if (docs / "index.html").is_file()
        else ""
    )
    if (reports_dir / "dbt_docs" / "index.html").is_file():
        docs_link += (
            '<p><a id="dbt-docs-link" href="dbt_docs/index.html">dbt docs</a> (every model and '
            "column described, with the lineage from feeds to marts)</p>"
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
    write_index(reports_dir)
    return report
