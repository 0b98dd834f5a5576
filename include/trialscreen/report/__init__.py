"""The screening report: one self-contained static HTML page per run.

``write_report`` reads the marts and the audit tables (native clients, aggregates only) and
writes ``<reports_dir>/<run_id>/report.html``, a copy in ``<reports_dir>/latest/report.html``
and ``<reports_dir>/index.html`` listing every run's report. Charts are inline SVG generated
here; CSS is inline; there is no script and nothing is fetched from the network.

What is shown: the run header; per trial and cohort the attrition funnel
(``marts.screening_funnel``), criterion outcomes (``marts.criterion_evaluations``) and
candidate counts and the accrual per night (``marts.screening_candidate_history``: newly
eligible, no longer eligible), under the trial's title, NCT id and criterion labels; the feed
health dashboard: dated records per feed and night over the last nights
(``audit.pipeline_runs``, ``audit.feed_counts``), a zero- or low-volume night flagged against
the feed's trailing median, freshness from observations dated on or before the screening date
(future-dated ones counted apart); quarantine counts and top errors (``quarantine.records``:
the error text only, never the payload or the file name); unit/plausibility issues and the
unit spellings no seed converts (``intermediate.int_observations``, when built); the top
unmapped codes; and the quality-gate outcome with a link to the Data Docs. Times are shown in
the hospital's time zone (``TRIALSCREEN_TIMEZONE``).

PHI: every query aggregates or selects non-identifying columns; no MRN, name, birth date,
source file name or raw payload is read. Every text is passed through ``html.escape``.
"""

from trialscreen.report.charts import (
    STATUS_COLORS,
    VOLUME_COLORS,
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
    feed_nights,
    freshness,
)
from trialscreen.report.html import CSS, local_time, render, write_index, write_report

__all__ = [
    "CSS",
    "LOW_FRACTION",
    "RECENT_NIGHTS",
    "STATUS_COLORS",
    "UNMAPPED_TOP",
    "VOLUME_COLORS",
    "ReportData",
    "collect",
    "feed_nights",
    "freshness",
    "funnel_svg",
    "local_time",
    "night_volume_svg",
    "outcomes_svg",
    "render",
    "write_index",
    "write_report",
]
