"""The run's last step: :func:`write_reports` (the coordinators' worklist on a published
night, the screening report always, the dbt docs site when asked) and the patient counts
per trial, cohort and status the run summary shows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trialscreen.pipeline.runs import _read_run
from trialscreen.pipeline.transformer import transform_url
from trialscreen.warehouse import Warehouse

# the name the records carried before the package split (the JSON logs' "logger" field)
log = logging.getLogger("trialscreen.pipeline")


def write_reports(
    warehouse: str | Path,
    reports_dir: Path,
    run_id: str,
    validation: Any = None,
    dbt_docs: bool = False,
) -> Path:
    """The screening report (always) and, when asked, the dbt docs site for analysts
    (``<reports>/dbt_docs/index.html``, regenerated from the warehouse catalog when the
    project, the releases or the warehouse changed since the site was made:
    :func:`trialscreen.dag_docs.refresh_dbt_docs`, the DAG's rule too)."""
    published = False
    try:  # the coordinators' worklist, restricted and apart from the reports: published runs
        with Warehouse.connect(warehouse) as wh:
            published = _read_run(wh, run_id)["status"] == "published"
        if published:
            from trialscreen.worklist import write_worklist

            write_worklist(transform_url(warehouse), run_id, Path(reports_dir))
    except Exception as exc:  # never stops the report; the class only (a row may carry PHI)
        log.error("worklist failed", extra={"run_id": run_id, "error": type(exc).__name__})
    from trialscreen.report import write_report

    report = Path(write_report(transform_url(warehouse), Path(reports_dir), run_id, validation))
    if dbt_docs:
        from trialscreen.dag_docs import refresh_dbt_docs

        refresh_dbt_docs(warehouse, Path(reports_dir), published)
    return report


def candidate_counts(warehouse: str | Path) -> dict[str, int]:
    with Warehouse.connect(transform_url(warehouse)) as wh:
        if not wh.table_exists("marts.screening_results"):
            return {}
        rows = wh.query(
            "select trial_id, cohort_id, candidate_status, count(*) "
            "from marts.screening_results group by 1, 2, 3"
        )
    return {f"{t}/{c}/{s}": int(n) for t, c, s, n in rows}
