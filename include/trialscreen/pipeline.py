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
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from trialscreen import pseudonym, schema
from trialscreen.errors import summarize
from trialscreen.ingest import FeedCounts, ensure_tables
from trialscreen.ingest import ingest_feed as _ingest_feed
from trialscreen.run_ids import new_run_id
from trialscreen.warehouse import Warehouse

log = logging.getLogger(__name__)

RUNS_TABLE = "audit.pipeline_runs"
RUNS_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "screening_date": pl.Date(),
    "trial_ids": pl.String(),
    "trial_definition_hash": pl.String(),
    "code_version": pl.String(),
    "warehouse": pl.String(),
    "started_at": schema.TS,
    "finished_at": schema.TS,
    "status": pl.String(),  # running | published | failed
    "feed_counts": pl.String(),  # JSON: {feed: {records_in, loaded, ...}}
    "validation_result": pl.String(),  # JSON summary of the quality gate
    "message": pl.String(),  # one line, PHI-free
}
KEYS_TABLE = "restricted.patient_keys"
# dbt writes these schemas as <schema>_candidate during a run; publish swaps them in.
PUBLISHED_SCHEMAS = ("marts", "restricted")
CANDIDATE_SUFFIX = "_candidate"


def code_version() -> str:
    version = metadata.version("trialscreen")
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{sha}" if sha else version


@dataclass
class RunResult:
    run_id: str
    screening_date: date
    status: str
    feed_counts: dict[str, FeedCounts] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    message: str = ""

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


# --- run bookkeeping -------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _read_run(wh: Warehouse, run_id: str) -> dict[str, Any]:
    frame = wh.query_frame(f"select * from {RUNS_TABLE} where run_id = '{run_id}'")
    if frame.height == 0:
        raise LookupError(f"run {run_id} was never started")
    return frame.row(0, named=True)


def _write_run(wh: Warehouse, row: dict[str, Any]) -> None:
    wh.ensure_table(RUNS_TABLE, RUNS_COLUMNS)
    with wh.transaction():
        wh.execute(f"delete from {RUNS_TABLE} where run_id = {wh.param}", [row["run_id"]])
        wh.load_frame(RUNS_TABLE, pl.DataFrame([row], schema=RUNS_COLUMNS))


def _update_run(warehouse: str | Path, run_id: str, **changes: Any) -> None:
    with Warehouse.connect(warehouse) as wh:
        row = _read_run(wh, run_id)
        row.update(changes)
        _write_run(wh, row)


def start_run(
    warehouse: str | Path, screening_date: date, trials: list[str], run_id: str | None = None
) -> str:
    """Check configuration, then record the run as running. Raises before any write."""
    from trialscreen.trial import definition_hash, load_trial

    definitions = [load_trial(t) for t in trials]
    pseudonym.pseudonym_key()  # fail now, not after an hour of ingestion
    run_id = run_id or new_run_id()
    with Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        _write_run(
            wh,
            {
                "run_id": run_id,
                "screening_date": screening_date,
                "trial_ids": ",".join(d.trial_id for d in definitions),
                "trial_definition_hash": ",".join(definition_hash(d) for d in definitions),
                "code_version": code_version(),
                "warehouse": wh.url.redacted(),
                "started_at": _now(),
                "finished_at": None,
                "status": "running",
                "feed_counts": None,
                "validation_result": None,
                "message": None,
            },
        )
    return run_id


def ingest_feed(warehouse: str | Path, drop: Path, feed: str, run_id: str) -> FeedCounts:
    with Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        return _ingest_feed(wh, Path(drop), feed, run_id)


def write_patient_keys(wh: Warehouse, key: str) -> int:
    """Add a pseudonym for every MRN landed in any raw table that has none yet."""
    wh.ensure_table(KEYS_TABLE, {"mrn": pl.String(), "patient_key": pl.String()})
    sources = [
        f"select mrn from raw.{schema.raw_table(feed, entity)} where mrn is not null"
        for feed in schema.FEEDS
        for entity in schema.ENTITIES
    ]
    new = wh.query(
        f"select distinct mrn from ({' union '.join(sources)}) m "
        f"where not exists (select 1 from {KEYS_TABLE} k where k.mrn = m.mrn)"
    )
    if not new:
        return 0
    frame = pl.DataFrame(
        {
            "mrn": [r[0] for r in new],
            "patient_key": [pseudonym.patient_key(r[0], key) for r in new],
        }
    )
    wh.load_frame(KEYS_TABLE, frame)
    wh.analyze(KEYS_TABLE)
    return frame.height


def prepare_build(warehouse: str | Path, trials: list[str]) -> None:
    """Pseudonym keys for new MRNs and the trial definitions as config tables."""
    from trialscreen.trial import load_trial, trial_tables

    definitions = [load_trial(t) for t in trials]
    with Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        write_patient_keys(wh, pseudonym.pseudonym_key())
        for table, frame in trial_tables(definitions).items():
            wh.replace_table(table if "." in table else f"config.{table}", frame)


def dbt_vars(screening_date: date, run_id: str) -> dict[str, Any]:
    """The variables every dbt invocation of a run gets (CLI and Cosmos alike)."""
    from trialscreen.settings import hospital_timezone

    return {
        "screening_date": screening_date.isoformat(),
        "run_id": run_id,
        "wap": True,
        "timezone": hospital_timezone(),
    }


def build(warehouse: str | Path, screening_date: date, run_id: str) -> None:
    from trialscreen.transform import seed_and_build

    seed_and_build(str(warehouse), screening_date, run_id, extra_vars={"wap": True})


def candidate_schema_map() -> dict[str, str]:
    return {s: s + CANDIDATE_SUFFIX for s in PUBLISHED_SCHEMAS}


def validate(warehouse: str | Path, reports_dir: Path, run_id: str, screening_date: date) -> Any:
    """Validate the landed feeds and the candidate tables; record the result on the run."""
    from trialscreen.validate import validate as gx_validate

    outcome = gx_validate(
        str(warehouse),
        Path(reports_dir),
        run_id,
        screening_date,
        schema_map=candidate_schema_map(),
    )
    _update_run(warehouse, run_id, validation_result=outcome.as_json())
    return outcome


def _tables_in(wh: Warehouse, schema_name: str) -> list[str]:
    rows = wh.query(
        "select table_name from information_schema.tables "
        f"where table_schema = {wh.param} and table_type = 'BASE TABLE' order by table_name",
        [schema_name],
    )
    return [r[0] for r in rows]


def publish(warehouse: str | Path, run_id: str) -> dict[str, int]:
    """Swap every candidate table into its published schema in one transaction.

    Tables are copied (``create table as``) rather than renamed so that PostgreSQL default
    privileges of the published schema apply to them (analysts keep their grants).
    """
    published: dict[str, int] = {}
    with Warehouse.connect(warehouse) as wh:
        with wh.transaction():
            for target in PUBLISHED_SCHEMAS:
                source = target + CANDIDATE_SUFFIX
                tables = _tables_in(wh, source)
                if not tables:
                    continue
                wh.ensure_schema(target)
                for table in tables:
                    wh.execute(f"drop table if exists {target}.{table}")
                    wh.execute(f"create table {target}.{table} as select * from {source}.{table}")
                    published[f"{target}.{table}"] = int(
                        wh.scalar(f"select count(*) from {target}.{table}")
                    )
        row = _read_run(wh, run_id)
        row.update(status="published", finished_at=_now())
        _write_run(wh, row)
    log.info("published", extra={"run_id": run_id, "tables": len(published)})
    return published


def write_reports(
    warehouse: str | Path,
    reports_dir: Path,
    run_id: str,
    validation: Any = None,
    dbt_docs: bool = False,
) -> Path:
    """The screening report (always) and, when asked, the dbt docs site for analysts
    (``<reports>/dbt_docs/index.html``, regenerated from the warehouse catalog)."""
    from trialscreen.report import write_report

    report = Path(write_report(str(warehouse), Path(reports_dir), run_id, validation))
    if dbt_docs:
        from trialscreen.transform import generate_docs

        generate_docs(str(warehouse), Path(reports_dir) / "dbt_docs")
    return report


def finish_run(
    warehouse: str | Path,
    run_id: str,
    status: str,
    feed_counts: dict[str, FeedCounts] | None = None,
    message: str | None = None,
) -> None:
    changes: dict[str, Any] = {"status": status, "finished_at": _now()}
    if feed_counts is not None:
        changes["feed_counts"] = json.dumps(
            {f: c.as_row() for f, c in feed_counts.items()}, default=str
        )
    if message is not None:
        changes["message"] = message[:500]
    _update_run(warehouse, run_id, **changes)


def candidate_counts(warehouse: str | Path) -> dict[str, int]:
    with Warehouse.connect(warehouse) as wh:
        if not wh.table_exists("marts.screening_results"):
            return {}
        rows = wh.query(
            "select trial_id, cohort_id, candidate_status, count(*) "
            "from marts.screening_results group by 1, 2, 3"
        )
    return {f"{t}/{c}/{s}": int(n) for t, c, s, n in rows}


class ValidationFailed(RuntimeError):
    """Blocking expectations failed: nothing was published."""


def run_pipeline(
    input_dir: Path,
    screening_date: date,
    warehouse: str | Path | None = None,
    trials: list[str] | None = None,
    reports_dir: Path | None = None,
    run_id: str | None = None,
    dbt_docs: bool = False,
) -> RunResult:
    """The whole nightly job outside Airflow, step by step as the DAG runs it."""
    warehouse = warehouse or "trialscreen.duckdb"
    trials = trials or ["axiom"]
    reports_dir = Path(reports_dir or Path(str(warehouse)).parent / "reports")
    if not Path(input_dir).is_dir():
        raise FileNotFoundError(f"--input: '{input_dir}' is not a directory")
    run_id = start_run(warehouse, screening_date, trials, run_id)
    result = RunResult(run_id=run_id, screening_date=screening_date, status="running")
    outcome = None
    try:
        for feed in schema.FEEDS:
            result.feed_counts[feed] = ingest_feed(warehouse, Path(input_dir), feed, run_id)
        finish_run(warehouse, run_id, "running", result.feed_counts)
        prepare_build(warehouse, trials)
        build(warehouse, screening_date, run_id)
        outcome = validate(warehouse, reports_dir, run_id, screening_date)
        result.artifacts["data docs"] = Path(outcome.data_docs_index)
        if not outcome.success:
            names = ", ".join(sorted({f["expectation"] for f in outcome.blocking_failures}))
            raise ValidationFailed(f"quality gate failed, nothing published: {names}")
        publish(warehouse, run_id)
        result.status = "published"
    except Exception as exc:
        # the error's class and table, never its text (a database error quotes the row)
        result.status, result.message = "failed", summarize(exc)
        finish_run(warehouse, run_id, "failed", message=result.message)
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
