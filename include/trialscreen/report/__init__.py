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

from trialscreen.report.charts import (
    RECENT_RUNS,
    STATUS_COLORS,
    VOLUME_COLORS,
    funnel_svg,
    outcomes_svg,
    volume_svg,
)
from trialscreen.report.collect import UNMAPPED_TOP, ReportData, collect
from trialscreen.report.html import CSS, render, write_report

__all__ = [
    "CSS",
    "RECENT_RUNS",
    "STATUS_COLORS",
    "UNMAPPED_TOP",
    "VOLUME_COLORS",
    "ReportData",
    "collect",
    "funnel_svg",
    "outcomes_svg",
    "render",
    "volume_svg",
    "write_report",
]
