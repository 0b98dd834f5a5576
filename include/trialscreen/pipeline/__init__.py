"""The nightly job as plain steps. The CLI runs them in order (``run_pipeline``); the Airflow
DAG runs the same functions as tasks, with dbt as a Cosmos task group in the middle.

    start_run        trial definitions checked (fail at start, naming the field); run row
    ingest_feed      one feed of the drop into raw/quarantine (+ audit counts)
    prepare_build    pseudonym keys for new MRNs; trial definitions into config.*
    build            dbt seed + build into the *candidate* schemas (write)
    validate         Great Expectations on the landed feeds and the candidate tables (audit)
    publish          candidate tables replace the published ones in one transaction (publish)
    write_reports    screening report + Data Docs (+ dbt docs when built)
    finish_run       audit.pipeline_runs row: status, counts, validation result

When validation fails nothing is published: yesterday's marts stay in place, the run row
says why, and the Data Docs show the failed expectations.

Roles (PostgreSQL, docs/deployment.md): ``warehouse`` is the loader's URL (start, ingest,
pseudonym keys, config, the run row); dbt, the quality gate, publish and the reports connect
with :func:`transform_url` (``$TRIALSCREEN_TRANSFORM_URL``, the transformer, when the
deployment names one), which owns the candidate and published schemas.

One run at a time: every step holds the warehouse's run lock (``warehouse.run_lock``; the
CLI holds it for the whole run) and a second run refuses with ``WarehouseBusy``. A run found
``running`` by the next ``start_run`` (which holds the lock, so that run's process is gone)
is marked ``abandoned``; the records it landed are checked by the next gate, which
validates every raw row whose ``load_id`` is above the last one a gate passed.

The steps live in modules named for what they hold; this package re-exports them, and
:func:`run_pipeline` here calls them by these names:

    runs           the run records (audit.pipeline_runs), finish_run, code_version
    start          start_run, ingest_feed, prepare_build, dbt_vars
    builds         build, its plan and fingerprint, audit.build_state, audit.build_nodes,
                   restricted.build_errors (a failed build's database texts)
    audit_publish  validate, publish
    reports        write_reports, candidate_counts
    transformer    transform_url
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from trialscreen import schema
from trialscreen.errors import summarize
from trialscreen.ingest import FeedCounts
from trialscreen.pipeline.audit_publish import (
    CANDIDATE_SUFFIX,
    DEFAULT_PUBLISH_LOCK_TIMEOUT,
    PUBLISH_LOCK_TIMEOUT_ENV,
    PUBLISHED_SCHEMAS,
    READER_SCHEMAS,
    PublishLockTimeout,
    candidate_schema_map,
    publish,
    validate,
)
from trialscreen.pipeline.builds import (
    BUILD_ERRORS_TABLE,
    BUILD_NODES_TABLE,
    BUILD_STATE_COLUMNS,
    BUILD_STATE_TABLE,
    BuildPlan,
    build,
    build_fingerprint,
    plan_build,
    plan_vars,
    record_build,
)
from trialscreen.pipeline.reports import (
    candidate_counts,
    write_reports,
)
from trialscreen.pipeline.runs import (
    RUNS_COLUMNS,
    RUNS_TABLE,
    code_version,
    finish_run,
)
from trialscreen.pipeline.start import (
    KEYS_TABLE,
    dbt_vars,
    ingest_feed,
    prepare_build,
    start_run,
    write_patient_keys,
)
from trialscreen.pipeline.transformer import (
    TRANSFORM_URL_ENV,
    transform_url,
)
from trialscreen.warehouse import run_lock

__all__ = [
    "BUILD_STATE_COLUMNS",
    "BUILD_ERRORS_TABLE",
    "BUILD_NODES_TABLE",
    "BUILD_STATE_TABLE",
    "BuildPlan",
    "CANDIDATE_SUFFIX",
    "DEFAULT_PUBLISH_LOCK_TIMEOUT",
    "KEYS_TABLE",
    "PUBLISHED_SCHEMAS",
    "PUBLISH_LOCK_TIMEOUT_ENV",
    "PublishLockTimeout",
    "READER_SCHEMAS",
    "RUNS_COLUMNS",
    "RUNS_TABLE",
    "RunProgress",
    "RunResult",
    "TRANSFORM_URL_ENV",
    "ValidationFailed",
    "build",
    "build_fingerprint",
    "candidate_counts",
    "candidate_schema_map",
    "code_version",
    "dbt_vars",
    "finish_run",
    "ingest_feed",
    "plan_build",
    "plan_vars",
    "prepare_build",
    "publish",
    "record_build",
    "run_pipeline",
    "start_run",
    "transform_url",
    "validate",
    "write_patient_keys",
    "write_reports",
]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str
    screening_date: date
    status: str
    feed_counts: dict[str, FeedCounts] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    message: str = ""
    # failed because the quality gate blocked publication (not a crash): the CLI exits 3
    gate_blocked: bool = False

    @property
    def published(self) -> bool:
        return self.status == "published"

    def summary(self) -> str:
        feeds = "\n".join(
            f"    {f:5} {c.records_in} in = {c.loaded} loaded + {c.duplicates_skipped} "
            f"duplicates + {c.quarantined} quarantined"
            for f, c in self.feed_counts.items()
        )
        cands = "\n".join(f"    {k:40} {v}" for k, v in sorted(self.candidates.items()))
        return (
            f"run {self.run_id} as of {self.screening_date}: {self.status}"
            + (f" ({self.message})" if self.message else "")
            + (f"\n  feeds:\n{feeds}" if feeds else "")
            + (f"\n  patients per trial/cohort/status:\n{cands}" if cands else "")
        )


class ValidationFailed(RuntimeError):
    """Blocking expectations failed: nothing was published."""


class RunProgress(Protocol):
    """What :func:`run_pipeline` reports while it runs. The CLI draws it on a terminal
    (``trialscreen.progress``); the DAG and the tests pass none."""

    def step(self, name: str) -> None:
        """A step begins: ingest, build, validate, publish, reports."""

    def files(self, feed: str, n: int) -> None:
        """``n`` more entries of a feed's folder were handled (landed or skipped)."""

    def dbt_event(self, event: Any) -> None:
        """One dbt event (``EventMsg``), called from dbt's threads."""


class _NoProgress:
    def step(self, name: str) -> None:
        pass

    def files(self, feed: str, n: int) -> None:
        pass

    def dbt_event(self, event: Any) -> None:
        pass


def run_pipeline(
    input_dir: Path,
    screening_date: date,
    warehouse: str | Path | None = None,
    trials: list[str] | None = None,
    reports_dir: Path | None = None,
    run_id: str | None = None,
    dbt_docs: bool = False,
    progress: RunProgress | None = None,
    full_refresh: bool = False,
) -> RunResult:
    """The whole nightly job outside Airflow, step by step as the DAG runs it, holding the
    warehouse's run lock throughout: a second run refuses at once (``WarehouseBusy``).
    ``full_refresh`` rebuilds the incremental models whole (never the published history)."""
    with run_lock(warehouse or "trialscreen.duckdb"):
        return _run_pipeline(
            input_dir,
            screening_date,
            warehouse,
            trials,
            reports_dir,
            run_id,
            dbt_docs,
            progress or _NoProgress(),
            full_refresh,
        )


def _run_pipeline(
    input_dir: Path,
    screening_date: date,
    warehouse: str | Path | None,
    trials: list[str] | None,
    reports_dir: Path | None,
    run_id: str | None,
    dbt_docs: bool,
    progress: RunProgress,
    full_refresh: bool = False,
) -> RunResult:
    warehouse = warehouse or "trialscreen.duckdb"
    trials = trials or ["axiom"]
    reports_dir = Path(reports_dir or Path(str(warehouse)).parent / "reports")
    if not Path(input_dir).is_dir():
        raise FileNotFoundError(f"--input: '{input_dir}' is not a directory")
    run_id = start_run(warehouse, screening_date, trials, run_id)
    result = RunResult(run_id=run_id, screening_date=screening_date, status="running")
    outcome = None
    try:
        progress.step("ingest")
        for feed in schema.FEEDS:

            def tick(n: int, feed: str = feed) -> None:
                progress.files(feed, n)

            result.feed_counts[feed] = ingest_feed(warehouse, Path(input_dir), feed, run_id, tick)
        finish_run(warehouse, run_id, "running", result.feed_counts)
        progress.step("build")
        prepare_build(warehouse, trials)
        build(
            warehouse,
            screening_date,
            run_id,
            callbacks=[progress.dbt_event],
            full_refresh=full_refresh,
        )
        progress.step("validate")
        outcome = validate(warehouse, reports_dir, run_id, screening_date)
        result.artifacts["data docs"] = Path(outcome.data_docs_index)
        if not outcome.success:
            names = ", ".join(sorted({f["expectation"] for f in outcome.blocking_failures}))
            raise ValidationFailed(f"quality gate failed, nothing published: {names}")
        progress.step("publish")
        publish(warehouse, run_id)
        result.status = "published"
    except Exception as exc:
        # the error's class and table, never its text (a database error quotes the row)
        result.status, result.message = "failed", summarize(exc)
        result.gate_blocked = isinstance(exc, ValidationFailed)
        finish_run(warehouse, run_id, "failed", message=result.message)
    progress.step("reports")
    result.candidates = candidate_counts(warehouse)
    try:
        result.artifacts["report"] = write_reports(
            warehouse, reports_dir, run_id, outcome, dbt_docs=dbt_docs
        )
        if dbt_docs:
            result.artifacts["dbt docs"] = reports_dir / "dbt_docs" / "index.html"
    except Exception as exc:  # the report must never hide the run's own outcome
        log.error("report failed", extra={"run_id": run_id, "error": type(exc).__name__})
    log.info("run finished", extra={"run_id": run_id, "status": result.status})
    return result
