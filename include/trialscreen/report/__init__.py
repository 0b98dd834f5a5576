"""The screening report (see :mod:`trialscreen.report.html`)."""

from trialscreen.report.html import (
    CSS,
    RECENT_RUNS,
    STATUS_COLORS,
    UNMAPPED_TOP,
    VOLUME_COLORS,
    ReportData,
    collect,
    funnel_svg,
    outcomes_svg,
    render,
    volume_svg,
    write_report,
)

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
