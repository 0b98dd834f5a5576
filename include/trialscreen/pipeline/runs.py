"""The run records: one ``audit.pipeline_runs`` row per run (status, counts, the quality
gate's result, the last load id a gate passed), read and rewritten by every step; runs a
later run found ``running`` marked ``abandoned``; the code version a run records.
"""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from trialscreen import schema
from trialscreen.ingest import FeedCounts
from trialscreen.run_ids import check_run_id
from trialscreen.warehouse import Warehouse

# the name the records carried before the package split (the JSON logs' "logger" field)
log = logging.getLogger("trialscreen.pipeline")

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
    "status": pl.String(),  # running | published | failed | abandoned
    "feed_counts": pl.String(),  # JSON: {feed: {records_in, loaded, ...}}
    "validation_result": pl.String(),  # JSON summary of the quality gate
    "message": pl.String(),  # one line, PHI-free
    # the highest raw load_id this run's quality gate passed (null: the gate did not pass)
    "validated_load_id": pl.Int64(),
}


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


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _read_run(wh: Warehouse, run_id: str) -> dict[str, Any]:
    columns = list(RUNS_COLUMNS)
    rows = wh.query(
        f"select {', '.join(columns)} from {RUNS_TABLE} where run_id = {wh.param}",
        [check_run_id(run_id)],
    )
    if not rows:
        raise LookupError(f"run {run_id} was never started")
    return dict(zip(columns, rows[0], strict=True))


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


def _abandon_stale_runs(wh: Warehouse, run_id: str) -> list[str]:
    """Called holding the run lock, so a run still ``running`` has no live process (it would
    hold the lock): mark it ``abandoned``. Its raw rows carry a load id above the last one a
    gate passed, so the next quality gate validates them before anything is published."""
    stale = [
        r[0]
        for r in wh.query(
            f"select run_id from {RUNS_TABLE} where status = 'running' and run_id <> {wh.param}",
            [run_id],
        )
    ]
    for old in stale:
        wh.execute(
            f"update {RUNS_TABLE} set status = 'abandoned', finished_at = {wh.param}, "
            f"message = {wh.param} where run_id = {wh.param} and status = 'running'",
            [
                _now(),
                f"abandoned: still running when run {run_id} started with the run lock free "
                "(its process ended without finishing); the next quality gate checks the "
                "records it landed",
                old,
            ],
        )
        log.warning("run abandoned", extra={"run_id": old, "found_by": run_id})
    return stale


def _refuse_abandoned(wh: Warehouse, run_id: str) -> None:
    if _read_run(wh, run_id)["status"] == "abandoned":
        raise RuntimeError(
            f"run {run_id} was marked abandoned by a later run: start a new run instead"
        )


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
