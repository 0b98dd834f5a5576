"""The nightly job as plain functions: the CLI calls ``run_pipeline``; the DAG calls the steps.

load trial definitions (fail at start, naming the field)
→ ingest the drop (raw + quarantine + audit counts)
→ pseudonym keys for new MRNs (restricted.patient_keys)
→ trial definitions into config.*
→ dbt seed + build (staging → intermediate → marts) as of the screening date
→ audit.pipeline_runs row with the outcome
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path

import polars as pl

from trialscreen import pseudonym, schema
from trialscreen.ingest import FeedCounts, ingest
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
    message: str = ""

    @property
    def published(self) -> bool:
        return self.status == "published"

    def summary(self) -> str:
        feeds = "; ".join(
            f"{f}: {c.records_in} in = {c.loaded} loaded + {c.duplicates_skipped} dup "
            f"+ {c.quarantined} quarantined"
            for f, c in self.feed_counts.items()
        )
        cands = ", ".join(f"{k} {v}" for k, v in sorted(self.candidates.items()))
        return (
            f"run {self.run_id} ({self.screening_date}) {self.status}"
            + (f": {self.message}" if self.message else "")
            + (f"\n  feeds: {feeds}" if feeds else "")
            + (f"\n  candidates: {cands}" if cands else "")
        )


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
    return frame.height


def _record_run(wh: Warehouse, row: dict[str, object]) -> None:
    wh.ensure_table(RUNS_TABLE, RUNS_COLUMNS)
    with wh.transaction():
        wh.execute(f"delete from {RUNS_TABLE} where run_id = {wh.param}", [row["run_id"]])
        wh.load_frame(RUNS_TABLE, pl.DataFrame([row], schema=RUNS_COLUMNS))


def run_pipeline(
    input_dir: Path,
    screening_date: date,
    warehouse: str | Path | None = None,
    trials: list[str] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """The whole nightly job outside Airflow. Bad configuration raises before any write."""
    from trialscreen.trial import definition_hash, load_trial, trial_tables

    definitions = [load_trial(t) for t in (trials or ["axiom"])]
    key = pseudonym.pseudonym_key()
    if not Path(input_dir).is_dir():
        raise FileNotFoundError(f"--input: '{input_dir}' is not a directory")
    run_id = run_id or new_run_id()
    started = datetime.now(UTC).replace(tzinfo=None)
    row: dict[str, object] = {
        "run_id": run_id,
        "screening_date": screening_date,
        "trial_ids": ",".join(d.trial_id for d in definitions),
        "trial_definition_hash": ",".join(definition_hash(d) for d in definitions),
        "code_version": code_version(),
        "warehouse": None,
        "started_at": started,
        "finished_at": None,
        "status": "running",
        "feed_counts": None,
        "validation_result": None,
        "message": None,
    }
    result = RunResult(run_id=run_id, screening_date=screening_date, status="running")
    with Warehouse.connect(warehouse) as wh:
        row["warehouse"] = wh.url.redacted()
        _record_run(wh, row)
        try:
            result.feed_counts = ingest(wh, Path(input_dir), run_id)
            row["feed_counts"] = json.dumps(
                {f: c.as_row() for f, c in result.feed_counts.items()}, default=str
            )
            write_patient_keys(wh, key)
            for table, frame in trial_tables(definitions).items():
                wh.replace_table(table if "." in table else f"config.{table}", frame)
        except Exception as exc:
            row.update(status="failed", message=f"{type(exc).__name__}: {exc}"[:500])
            row["finished_at"] = datetime.now(UTC).replace(tzinfo=None)
            _record_run(wh, row)
            raise
    # dbt needs the DuckDB file to itself: the connection above is closed first
    from trialscreen.transform import build_dbt

    try:
        build_dbt(str(warehouse or "trialscreen.duckdb"), screening_date, run_id)
        status, message = "published", ""
    except Exception as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"[:500]
    with Warehouse.connect(warehouse) as wh:
        if status == "published":
            for trial_id, cohort, status_, n in wh.query(
                "select trial_id, cohort_id, candidate_status, count(*) "
                "from marts.screening_results group by 1, 2, 3"
            ):
                result.candidates[f"{trial_id}/{cohort}/{status_}"] = int(n)
        row.update(status=status, message=message or None)
        row["finished_at"] = datetime.now(UTC).replace(tzinfo=None)
        _record_run(wh, row)
    result.status, result.message = status, message
    log.info("run finished", extra={"run_id": run_id, "status": status})
    return result
