"""The night's first steps: :func:`start_run` (trial definitions and the pseudonym key
checked before any write, then the run row), :func:`ingest_feed` (one feed of the drop
into raw/quarantine), :func:`prepare_build` (pseudonym keys for new MRNs, the trial
definitions into ``config.*``) and the dbt variables every build of the run gets.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from trialscreen import pseudonym, schema
from trialscreen.ingest import FeedCounts, ensure_tables
from trialscreen.ingest import ingest_feed as _ingest_feed
from trialscreen.pipeline.runs import (
    RUNS_COLUMNS,
    RUNS_TABLE,
    _abandon_stale_runs,
    _now,
    _refuse_abandoned,
    _write_run,
    code_version,
)
from trialscreen.run_ids import check_run_id, new_run_id
from trialscreen.warehouse import Warehouse, identifier, run_lock

KEYS_TABLE = "restricted.patient_keys"


def start_run(
    warehouse: str | Path, screening_date: date, trials: list[str], run_id: str | None = None
) -> str:
    """Check configuration, then record the run as running. Raises before any write."""
    from trialscreen.trial import definition_hash, load_trial

    definitions = [load_trial(t) for t in trials]
    pseudonym.pseudonym_key()  # fail now, not after an hour of ingestion
    run_id = check_run_id(run_id or new_run_id())
    with run_lock(warehouse), Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        wh.ensure_table(RUNS_TABLE, RUNS_COLUMNS)
        _abandon_stale_runs(wh, run_id)
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
                "validated_load_id": None,
            },
        )
    return run_id


def ingest_feed(
    warehouse: str | Path,
    drop: Path,
    feed: str,
    run_id: str,
    progress: Callable[[int], None] | None = None,
) -> FeedCounts:
    with run_lock(warehouse), Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        _refuse_abandoned(wh, run_id)
        return _ingest_feed(wh, Path(drop), feed, run_id, progress=progress)


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
    with run_lock(warehouse), Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        write_patient_keys(wh, pseudonym.pseudonym_key())
        for table, frame in trial_tables(definitions).items():
            name = table if "." in table else f"config.{table}"
            if wh.engine == "postgres":
                # the staging views dbt built on it last night (stg_config__*) would make
                # PostgreSQL refuse the drop; dbt builds them again tonight
                wh.execute(f"drop table if exists {identifier(name)} cascade")
            wh.replace_table(name, frame)


def dbt_vars(screening_date: date, run_id: str) -> dict[str, Any]:
    """The variables every dbt invocation of a run gets (CLI and Cosmos alike)."""
    from trialscreen.settings import hospital_timezone

    return {
        "screening_date": screening_date.isoformat(),
        "run_id": run_id,
        "wap": True,
        "timezone": hospital_timezone(),
    }
