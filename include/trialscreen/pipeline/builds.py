"""The dbt build and its plan: :func:`build_fingerprint` (what the derived layers are a
function of besides raw), :func:`plan_build` (incremental from the last successful build,
or a full rebuild and why), :func:`build` (dbt seed + build into the candidate schemas)
and ``audit.build_state``, one row per successful build (docs/decisions.md, "Incremental
nights").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from trialscreen import schema
from trialscreen.dbt_output import BUILD_ERRORS_TABLE as BUILD_ERRORS_TABLE  # re-exported
from trialscreen.ingest import ensure_tables
from trialscreen.pipeline.runs import RUNS_TABLE, _now
from trialscreen.pipeline.transformer import transform_url
from trialscreen.run_ids import check_run_id
from trialscreen.transform import DbtBuildError
from trialscreen.warehouse import Warehouse, run_lock

# the name the records carried before the package split (the JSON logs' "logger" field)
log = logging.getLogger("trialscreen.pipeline")

# One row per successful dbt build: what the incremental models cover (docs/decisions.md,
# "Incremental nights"). The latest row decides the next build: its fingerprint unchanged,
# the next build recomputes only the patients loads above through_load_id changed.
BUILD_STATE_TABLE = "audit.build_state"
BUILD_STATE_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "built_at": schema.TS,
    "fingerprint": pl.String(),
    "full_refresh": pl.Boolean(),
    "after_load_id": pl.Int64(),  # null: a full rebuild
    "through_load_id": pl.Int64(),  # every load up to this one is in the incremental models
    "reason": pl.String(),  # why a full rebuild (PHI-free), null when incremental
    # incremental: did a raw row of a newer load exist (false: nothing was recomputed row by
    # row, docs/decisions.md "A night with nothing new"); null on a full rebuild
    "new_loads": pl.Boolean(),
}
# One row per dbt node of each nightly build by `trialscreen run` (seeds, models, tests):
# where a night's build time goes, at any size (docs/decisions.md, "Where a build's time
# goes"). Written after the build, also when it failed (what ran until then).
BUILD_NODES_TABLE = "audit.build_nodes"
BUILD_NODES_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "unique_id": pl.String(),  # e.g. model.trialscreen.int_observations: no data
    "resource_type": pl.String(),
    "status": pl.String(),
    "seconds": pl.Float64(),  # dbt's execution time of the node
    "finished_at": schema.TS,
}

# The database's text of each failed node of a failed build (docs/decisions.md, "dbt's
# errors"): it may quote a record (an MRN, a name, a birth date in a failed cast or a key),
# so it is kept here, in the PHI schema, and nowhere else; the run's message names the node
# and this table. unique_id is null for an error that stopped dbt before any node failed.
BUILD_ERRORS_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "unique_id": pl.String(),
    "message": pl.String(),  # the database's full text, as dbt reported it
    "recorded_at": schema.TS,
}


def write_build_errors(
    warehouse_url: str, run_id: str, texts: Iterable[tuple[str | None, str]]
) -> int:
    """Append (node unique_id or None, the database's text) rows to ``restricted.build_errors``
    of ``warehouse_url``; the number of rows. The pipeline's build and the DAG's dbt wrapper
    (trialscreen.dbt_output) both write through here."""
    rows = [
        {"run_id": run_id, "unique_id": node, "message": text, "recorded_at": _now()}
        for node, text in texts
    ]
    if rows:
        with Warehouse.connect(warehouse_url) as wh:
            wh.ensure_table(BUILD_ERRORS_TABLE, BUILD_ERRORS_COLUMNS)
            wh.load_frame(BUILD_ERRORS_TABLE, pl.DataFrame(rows, schema=BUILD_ERRORS_COLUMNS))
    return len(rows)


def _record_build_errors(warehouse: str | Path, run_id: str, error: DbtBuildError) -> None:
    texts: list[tuple[str | None, str]] = list(error.failures)
    if not texts and error.invocation_text:
        texts = [(None, error.invocation_text)]
    # as dbt's role (the transformer when the deployment names one), as the DAG's dbt writes
    # it (trialscreen.dbt_output): one owner of the table on PostgreSQL
    if write_build_errors(transform_url(warehouse), run_id, texts):
        error.kept_in(BUILD_ERRORS_TABLE)


class _NodeTimes:
    """A dbtRunner callback that keeps each finished node's name, status and time."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.rows: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> None:
        if event.info.name != "NodeFinished":
            return
        info, result = event.data.node_info, event.data.run_result
        self.rows.append(
            {
                "run_id": self.run_id,
                "unique_id": info.unique_id or info.node_name,
                "resource_type": info.resource_type or None,
                "status": str(result.status),
                "seconds": float(result.execution_time or 0.0),
                "finished_at": _now(),
            }
        )

    def record(self, warehouse: str | Path) -> None:
        with Warehouse.connect(warehouse) as wh:
            wh.ensure_table(BUILD_NODES_TABLE, BUILD_NODES_COLUMNS)
            wh.load_frame(BUILD_NODES_TABLE, pl.DataFrame(self.rows, schema=BUILD_NODES_COLUMNS))


# what a change of which rebuilds the derived layers: the dbt project (models, macros, seeds)
_PROJECT_PARTS = ("dbt_project.yml", "models", "macros", "seeds")


@dataclass(frozen=True)
class BuildPlan:
    """How tonight's dbt build treats the incremental models."""

    fingerprint: str
    through_load_id: int
    after_load_id: int | None  # None: rebuild (full refresh)
    reason: str | None  # why a rebuild
    # an incremental night: does a raw table hold a row of a load after after_load_id?
    new_loads: bool = True

    @property
    def full_refresh(self) -> bool:
        return self.after_load_id is None


_FINGERPRINT_PACKAGES = ("trialscreen", "dbt-core", "dbt-duckdb", "dbt-postgres", "duckdb")


def build_fingerprint(trial_hashes: str) -> str:
    """What the derived layers are a function of besides raw: the code version (the release
    of trialscreen, dbt and its adapters and DuckDB, and the content of the dbt project's
    models, macros and seeds, which is the code that builds them: a commit elsewhere, a
    document, leaves the fingerprint as it was), the trial definitions and the hospital time
    zone. A change of any of them rebuilds the derived layers."""
    import hashlib

    from trialscreen.settings import hospital_timezone
    from trialscreen.transform import default_project_dir

    digest = hashlib.sha256()
    versions = []
    for package in _FINGERPRINT_PACKAGES:
        try:
            versions.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} absent")
    for part in (*versions, trial_hashes, hospital_timezone()):
        digest.update(part.encode() + b"\0")
    project = default_project_dir()
    for name in _PROJECT_PARTS:
        root = project / name
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file():
                digest.update(path.relative_to(project).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def plan_build(warehouse: str | Path, run_id: str, full_refresh: bool = False) -> BuildPlan:
    """Tonight's build plan: incremental from the last successful build's loads when its
    fingerprint is tonight's, else (or when asked) a full rebuild. A run that re-ingests
    under its own run id after a build (its load id already covered) recomputes from that
    load on."""
    from trialscreen.ingest import LOADS_TABLE

    with Warehouse.connect(warehouse) as wh:
        ensure_tables(wh)
        wh.ensure_table(BUILD_STATE_TABLE, BUILD_STATE_COLUMNS)
        run = wh.query(
            f"select trial_ids, trial_definition_hash from {RUNS_TABLE} where run_id = {wh.param}",
            [check_run_id(run_id)],
        )
        trials = ":".join(str(v or "") for v in run[0]) if run else ""
        through = int(wh.scalar(f"select coalesce(max(load_id), 0) from {LOADS_TABLE}") or 0)
        own = wh.scalar(
            f"select min(load_id) from {LOADS_TABLE} where run_id = {wh.param}", [run_id]
        )
        last = wh.query(
            f"select b.fingerprint, b.through_load_id, r.status from {BUILD_STATE_TABLE} b "
            f"left join {RUNS_TABLE} r on r.run_id = b.run_id "
            "order by b.built_at desc limit 1"
        )
    fingerprint = build_fingerprint(trials)
    reason: str | None = None
    if full_refresh:
        reason = "full refresh asked for"
    elif not last:
        reason = "no earlier build"
    elif last[0][0] != fingerprint:
        reason = "code, dbt project, seeds, trial definitions or time zone changed"
    elif last[0][2] != "published":
        # the incremental tables are ahead of what is published (a blocked gate, a failed
        # publish, this run built before): an operator may have repaired raw since, so
        # nothing built then is trusted
        reason = "the last build was not published"
    if reason is not None:
        return BuildPlan(fingerprint, through, None, reason)
    after = int(last[0][1] or 0)
    if own is not None and int(own) <= after:
        after = int(own) - 1
    with Warehouse.connect(warehouse) as wh:
        return BuildPlan(fingerprint, through, after, None, _rows_after(wh, after))


def _rows_after(wh: Warehouse, after: int) -> bool:
    """Whether a raw table holds a row of a load after ``after``. Every run allocates a load
    id, files or not: a run since that landed records says yes at once (the feeds' counts);
    otherwise the raw tables' largest load ids decide (a row may have come without its
    run's counts: an operator's repair)."""
    from trialscreen.ingest import FEED_COUNTS_TABLE, LOADS_TABLE

    landed = wh.scalar(
        f"select count(*) from {LOADS_TABLE} l inner join {FEED_COUNTS_TABLE} c "
        f"on c.run_id = l.run_id where l.load_id > {wh.param} and c.loaded > 0",
        [after],
    )
    return bool(landed) or _newest_raw_load(wh) > after


def _newest_raw_load(wh: Warehouse) -> int:
    """The largest load id of any raw table (every table of the raw schema with a
    ``load_id``: what staging reads), 0 when none: an operator's insert without an
    ``audit.loads`` row counts as well. One query of each table's largest load id."""
    tables = sorted(
        table for table, columns in wh.columns_by_table(["raw"]).items() if "load_id" in columns
    )
    if not tables:
        return 0
    largest = " union all ".join(f"select max(load_id) as load_id from {t}" for t in tables)
    return int(wh.scalar(f"select coalesce(max(load_id), 0) from ({largest}) as raw_loads") or 0)


def _record_build(warehouse: str | Path, run_id: str, plan: BuildPlan) -> None:
    with Warehouse.connect(warehouse) as wh:
        wh.ensure_table(BUILD_STATE_TABLE, BUILD_STATE_COLUMNS)
        row = {
            "run_id": run_id,
            "built_at": _now(),
            "fingerprint": plan.fingerprint,
            "full_refresh": plan.full_refresh,
            "after_load_id": plan.after_load_id,
            "through_load_id": plan.through_load_id,
            "reason": plan.reason,
            "new_loads": None if plan.full_refresh else plan.new_loads,
        }
        wh.load_frame(BUILD_STATE_TABLE, pl.DataFrame([row], schema=BUILD_STATE_COLUMNS))


def plan_vars(plan: BuildPlan) -> dict[str, Any]:
    """The dbt variables a build plan adds to :func:`dbt_vars` (``trialscreen run`` and the
    DAG alike): the load id the incremental models continue from, and whether any raw row
    is newer (macros/incremental.sql); none on a full rebuild."""
    if plan.after_load_id is None:
        return {}
    return {
        "incremental_after_load_id": plan.after_load_id,
        "incremental_new_loads": plan.new_loads,
    }


def record_build(warehouse: str | Path, run_id: str, plan: BuildPlan) -> None:
    """Record a build that succeeded with ``plan`` in ``audit.build_state``: the next night
    continues from it. :func:`build` records its own; the DAG calls this in the task after
    its dbt build (docs/decisions.md, "The DAG builds incrementally")."""
    with run_lock(warehouse):
        _record_build(warehouse, check_run_id(run_id), plan)


def build(
    warehouse: str | Path,
    screening_date: date,
    run_id: str,
    callbacks: Sequence[Callable[[Any], None]] = (),
    *,
    full_refresh: bool = False,
) -> BuildPlan:
    """dbt seed + build into the candidate schemas. The incremental models recompute only
    the patients the loads since the last successful build changed, unless ``full_refresh``
    or the build fingerprint changed (:func:`plan_build`); the plan is recorded in
    ``audit.build_state`` once the build succeeded. The published history is never rebuilt
    (``marts.screening_candidate_history`` is read from the published schema)."""
    from trialscreen.transform import seed_and_build

    run_id = check_run_id(run_id)
    with run_lock(warehouse):
        plan = plan_build(warehouse, run_id, full_refresh)
        extra: dict[str, Any] = {"wap": True, **plan_vars(plan)}
        log.info(
            "build",
            extra={
                "run_id": run_id,
                "full_refresh": plan.full_refresh,
                "reason": plan.reason,
                "after_load_id": plan.after_load_id,
            },
        )
        times = _NodeTimes(run_id)
        try:
            seed_and_build(
                transform_url(warehouse),
                screening_date,
                run_id,
                extra_vars=extra,
                callbacks=[*callbacks, times],
                full_refresh=plan.full_refresh,
                # an incremental night: the fingerprint (seed files included) is the last
                # build's, so the reference tables it loaded stay
                seeds=plan.full_refresh,
            )
        except BaseException as failure:
            try:  # what ran before the failure, never in place of the build's own error
                times.record(warehouse)
            except Exception as exc:  # noqa: BLE001 - the warehouse may be what failed
                log.warning("build node times not recorded", extra={"error": type(exc).__name__})
            if isinstance(failure, DbtBuildError):
                try:  # the database's text, for those who may read records
                    _record_build_errors(warehouse, run_id, failure)
                except Exception as exc:  # noqa: BLE001 - the warehouse may be what failed
                    log.warning(
                        "build errors not recorded",
                        extra={"table": BUILD_ERRORS_TABLE, "error": type(exc).__name__},
                    )
            raise
        times.record(warehouse)
        _record_build(warehouse, run_id, plan)
    return plan
