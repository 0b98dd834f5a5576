"""The worklist page: static HTML, no script, every text from data escaped. It carries PHI
(names, MRNs, birth dates) and is written only to the restricted worklist directory."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Protocol

from trialscreen.worklist.build import Criterion, Entry

STATUS_LABEL = {
    "ready_for_review": "ready for review",
    "missing_data": "missing data",
    "ineligible": "ineligible",
}
OUTCOME_LABEL = {
    "reviewed": "reviewed",
    "contacted": "contacted",
    "screen_failed": "screen-failed",
    "consented": "consented",
    "enrolled": "enrolled",
    "not_interested": "not interested",
}
# the per-criterion columns of the marts shown when present, in this order, with a heading
# (the CSV and XLSX carry every column of restricted.worklist)
EXTRA_HEADINGS = {
    "margin": "margin",
    "near_flip": "near flip",
    "valid_until": "valid until",
    "next_step": "next step",
}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1f24}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:1.6rem 0 .3rem}
.meta{color:#555;margin-bottom:1rem}.restricted{background:#8b0000;color:#fff;
padding:.3rem .6rem;font-weight:600;display:inline-block;margin-bottom:.6rem}
.note{color:#444;margin:.2rem 0 .6rem}table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}.patient{background:#fafbfc;font-weight:600}
.s-ready_for_review{color:#0a6b2d}.s-missing_data{color:#9a6700}.s-ineligible{color:#8b0000}
.c-met{color:#0a6b2d}.c-not_met{color:#8b0000}.c-unknown{color:#9a6700}.c-review{color:#3b5bdb}
.tag{border-radius:3px;padding:0 .3rem;font-size:.8rem;font-weight:600;margin-left:.3rem}
.new{background:#dafbe1}.gone{background:#ffebe9}.closed{background:#eaeef2}
td.metwrap{padding:0 .4rem}summary{cursor:pointer;color:#555;padding:.2rem 0}
.steps ul{margin:.1rem 0 .2rem 1.2rem;padding:0;font-weight:400}
.more{color:#444;font-style:italic}
"""


def _t(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "yes" if value else ""
    return escape(str(value))


def _value(c: Criterion) -> str:
    if c.value is None:
        return ""
    return f"{_t(c.value)} {_t(c.unit)}".strip()


def _decision(e: Entry) -> str:
    d = e.decision
    if not d:
        return ""
    text = OUTCOME_LABEL.get(str(d.get("outcome")), str(d.get("outcome")))
    out = f"<b>{escape(text)}</b>"
    if d.get("reason"):
        out += f": {_t(d['reason'])}"
    when = str(d.get("recorded_at") or "")[:16].replace("T", " ")
    out += f"<br><small>{_t(d.get('recorded_by'))}, {_t(when)} UTC</small>"
    if not e.decision_unchanged:
        out += (
            f"<br><small>status was {_t(STATUS_LABEL.get(str(d.get('candidate_status')), ''))}"
            " when decided</small>"
        )
    return out


def _tags(e: Entry) -> str:
    tags = []
    if e.is_new:
        tags.append('<span class="tag new">new</span>')
    if e.is_no_longer_eligible:
        tags.append('<span class="tag gone">no longer eligible</span>')
    if e.is_closed:
        tags.append('<span class="tag closed">decided</span>')
    return "".join(tags)


def _criterion_row(c: Criterion, extras: list[str]) -> str:
    evidence = c.extra.get("evidence_date") or (c.evidence_at or "")[:10]
    cells = [
        _t(c.label),
        f'<span class="c-{_t(c.status)}">{_t(c.status.replace("_", " "))}</span>',
        _value(c),
        _t(c.threshold),
        _t(evidence),
        _t(c.reason),
        *(_t(c.extra.get(x)) for x in extras),
    ]
    return (
        f'<tr class="crit c-{_t(c.status)}-row">'
        + "".join(f"<td>{v}</td>" for v in cells)
        + "</tr>"
    )


def _entry(e: Entry, extras: list[str], width: int) -> str:
    status = STATUS_LABEL.get(e.candidate_status, e.candidate_status)
    steps = "".join(f"<li>{_t(s)}</li>" for s in e.next_steps)
    head = (
        f'<tr class="patient" id="p-{_t(e.trial_id)}-{_t(e.cohort_id)}-{_t(e.patient_key)}">'
        f'<td colspan="{width}">{_t(e.name)} &middot; MRN <span class="mrn">{_t(e.mrn)}</span>'
        f" &middot; born {_t(e.birth_date)} &middot; age {_t(e.age_years)} &middot; "
        f'<span class="s-{_t(e.candidate_status)}">{_t(status)}</span>'
        f" ({e.n_unknown} unknown){_tags(e)}"
        + (f" &middot; re-screen by {_t(e.rescreen_by)}" if e.rescreen_by else "")
        + (
            f'<div class="missing">Only missing: {_t(e.missing_item)}</div>'
            if e.missing_item
            else ""
        )
        + (f"<div>Decision: {_decision(e)}</div>" if e.decision else "")
        + (f'<div class="steps">Next steps:<ul>{steps}</ul></div>' if steps else "")
        + "</td></tr>"
    )
    open_rows = "".join(_criterion_row(c, extras) for c in e.criteria if c.status != "met")
    met = [c for c in e.criteria if c.status == "met"]
    met_rows = ""
    if met:
        inner = "".join(_criterion_row(c, extras) for c in met)
        met_rows = (
            f'<tr><td colspan="{width}" class="metwrap"><details><summary>{len(met)} '
            f"criteria met</summary><table>{inner}</table></details></td></tr>"
        )
    return head + open_rows + met_rows


@dataclass
class _Shown:
    """Criterion rows the page lists (the page's row count in the export audit)."""

    rows: int = 0


class Source(Protocol):
    """What the page and the exports read: an in-memory ``Worklist`` or a ``Snapshot``."""

    run_id: str
    screening_date: str | None
    built_at: str
    opted_out: dict[str, int]
    opt_out_source: str
    extra_columns: list[str]

    def cohorts(self) -> list[tuple[str, str]]: ...

    def ordered(
        self, trial_id: str, cohort_id: str, criteria_limit: int | None = None
    ) -> Iterator[Entry]: ...

    def rows(self, trial_id: str | None = None) -> int: ...

    def find(self, trial_id: str, cohort_id: str, mrn: str) -> Entry | None: ...


def _section(
    source: Source,
    trial: str,
    cohort: str,
    limit: int | None,
    width: int,
    thead: str,
    extras: list[str],
    shown: _Shown,
) -> str:
    """One cohort: counts over all its entries, the first ``limit`` of them listed."""
    counts: dict[str, int] = {}
    new = gone = total = 0
    body: list[str] = []
    for e in source.ordered(trial, cohort, criteria_limit=limit):
        total += 1
        if not e.is_no_longer_eligible:
            counts[e.candidate_status] = counts.get(e.candidate_status, 0) + 1
        new += e.is_new
        gone += e.is_no_longer_eligible
        if limit is None or len(body) < limit:
            body.append(_entry(e, extras, width))
            shown.rows += len(e.criteria)
    opted = source.opted_out.get(f"{trial}/{cohort}", 0)
    summary = (
        ", ".join(f"{n} {STATUS_LABEL.get(s, s)}" for s, n in sorted(counts.items()))
        or "no candidates"
    )
    more = total - len(body)
    cut = (
        f'<p class="more">The first {len(body)} of {total} patients, in the order above. '
        f"The other {more} are in the export: <code>trialscreen worklist export --trial "
        f"{_t(trial)}</code>.</p>"
        if more
        else ""
    )
    return (
        f'<section id="worklist-{_t(trial)}-{_t(cohort)}"><h2>{_t(trial)} / {_t(cohort)}</h2>'
        f'<p class="note">{summary}; {new} new and {gone} no longer eligible since the '
        f'last run. <span class="optout">{opted} patient(s) who declined research contact '
        "are not listed.</span></p>"
        f"<table>{thead}{''.join(body)}</table>{cut}</section>"
    )


def _pieces(
    source: Source, trial_id: str | None, limit: int | None, shown: _Shown
) -> Iterator[str]:
    extras = [c for c in EXTRA_HEADINGS if c in source.extra_columns]
    headings = ["criterion", "status", "value", "threshold", "evidence date", "reason"] + [
        EXTRA_HEADINGS.get(x, x.replace("_", " ")) for x in extras
    ]
    thead = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headings) + "</tr>"
    title = f"Worklist {escape(source.run_id)}"
    listed = (
        f"Each cohort lists its first {limit} patients in this order; the export has them all. "
        if limit is not None
        else ""
    )
    yield (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{title}</title><style>{CSS}</style></head><body>"
        '<div class="restricted">RESTRICTED: identifies patients. Coordinators only; '
        "do not forward.</div>"
        f'<h1>Coordinators\' worklist</h1><div class="meta">run {_t(source.run_id)}, '
        f"screening date {_t(source.screening_date)}, built {_t(source.built_at)} UTC. "
        f"Opt-out list: {_t(source.opt_out_source) or 'none configured'}. "
        "Order: ready for review, then missing data by the number of unknown criteria, then "
        "by re-screen date; decided patients whose status has not changed, then patients no "
        f"longer eligible, come last. {listed}</div>"
    )
    any_section = False
    for trial, cohort in source.cohorts():
        if trial_id not in (None, trial):
            continue
        any_section = True
        yield _section(source, trial, cohort, limit, len(headings), thead, extras, shown)
    if not any_section:
        yield "<p>No candidates in this run.</p>"
    yield "</body></html>\n"


def render(source: Source, trial_id: str | None = None, limit: int | None = None) -> str:
    """The page as one string (small worklists and tests; the run writes it with
    :func:`write_page`)."""
    return "".join(_pieces(source, trial_id, limit, _Shown()))


def write_page(path: Path, source: Source, limit: int | None) -> int:
    """Write the page a cohort at a time to ``path`` (0600); returns the criterion rows it
    shows."""
    shown = _Shown()
    private_write(path, _pieces(source, None, limit, shown))
    return shown.rows


def private_write(path: Path, pieces: Iterable[str]) -> None:
    """Write ``pieces`` to ``path``, readable by its owner only (0600) from the start."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for piece in pieces:
            fh.write(piece)
    os.chmod(path, 0o600)
