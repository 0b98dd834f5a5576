"""The report's charts as inline SVG (every text escaped), and the escaping and id helpers
the page shares with them.
"""

from __future__ import annotations

import html
import re

import polars as pl

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


FLAG_COLOR = "#c62828"


def night_volume_svg(feed: str, frame: pl.DataFrame) -> str:
    """One small multiple of the feed-health dashboard: records per night (loaded, duplicates,
    quarantined stacked), every night dated under its bar. A night with no records draws a
    red outline and a 0; a flagged night (``collect.feed_nights``) is marked red."""
    rows = frame.sort("night").to_dicts()
    slot = 34
    width = max(260, 10 + slot * len(rows))
    height, pad_b, pad_t = 150, 32, 18
    top = max((r["records_in"] or 0 for r in rows), default=0)
    any_records = top > 0
    top = top or 1
    parts = [
        f'<svg id="{_id("feed-nights", feed)}" class="chart small" role="img" width="{width}" '
        f'height="{height}" aria-label="{E(f"Records per night, {feed} feed")}">',
        _svg_text(
            4,
            12,
            f"{feed} (max {top} records/night)" if any_records else f"{feed} (no records)",
            cls="title",
        ),
    ]
    usable = height - pad_b - pad_t
    base = float(height - pad_b)
    for i, row in enumerate(rows):
        x = 5 + i * slot
        night = str(row["night"])
        n_in = int(row["records_in"] or 0)
        flag = row.get("flag") or ""
        median = row.get("trailing_median")
        tip = f"{night}: {n_in} records" + (
            f"; trailing median {median:g}" if median is not None else ""
        )
        if flag:
            tip += f"; flagged: {flag.replace('_', ' ')}"
        parts.append(
            f'<g class="night{" flagged" if flag else ""}" data-night="{E(night)}" '
            f'data-records="{n_in}" data-flag="{E(flag)}"><title>{E(tip)}</title>'
        )
        y = base
        for part, color in VOLUME_COLORS.items():
            n = int(row[part] or 0)
            h = usable * n / top
            y -= h
            if n:
                parts.append(
                    f'<rect x="{x + 3:.1f}" y="{y:.1f}" width="{slot - 6}" height="{h:.1f}" '
                    f'fill="{color}"/>'
                )
        if n_in == 0:
            parts.append(
                f'<rect x="{x + 3:.1f}" y="{base - 3:.1f}" width="{slot - 6}" height="3" '
                f'fill="none" stroke="{FLAG_COLOR}"/>'
            )
            parts.append(_svg_text(x + slot / 2, base - 6, "0", "middle", "zero"))
        if flag:
            parts.append(_svg_text(x + slot / 2, pad_t + 8, "!", "middle", "flag"))
        parts.append(_svg_text(x + slot / 2, height - 18, night[5:], "middle", "axis"))
        parts.append("</g>")
    if rows:
        parts.append(
            _svg_text(width - 4, height - 4, f"nights to {rows[-1]['night']}", "end", "axis")
        )
    parts.append("</svg>")
    return "".join(parts)
