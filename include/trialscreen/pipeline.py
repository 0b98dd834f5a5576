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
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from trialscreen import pseudonym, schema
from trialscreen.errors import summarize
from trialscreen.ingest import FeedCounts, ensure_tables
from trialscreen.ingest import ingest_feed as _ingest_feed
from trialscreen.run_ids import check_run_id, new_run_id
from trialscreen.warehouse import (
    DuckDBWarehouse,
    Warehouse,
    WarehouseUrl,
    identifier,
    published_file,
    run_lock,
    swap_in,
)

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
    "status": pl.String(),  # running | published | failed | abandoned
    "feed_counts": pl.String(),  # JSON: {feed: {records_in, loaded, ...}}
    "validation_result": pl.String(),  # JSON summary of the quality gate
    "message": pl.String(),  # one line, PHI-free
    # the highest raw load_id this run's quality gate passed (null: the gate did not pass)
    "validated_load_id": pl.Int64(),
}
KEYS_TABLE = "restricted.patient_keys"
# dbt writes these schemas as <schema>_candidate during a run; publish swaps them in.
PUBLISHED_SCHEMAS = ("marts", "restricted")
CANDIDATE_SUFFIX = "_candidate"
# on DuckDB, the schemas also published as a read-only file analysts open during a run
# (warehouse.published_file); restricted is not: coordinators get the worklist files
READER_SCHEMAS = ("marts",)
TRANSFORM_URL_ENV = "TRIALSCREEN_TRANSFORM_URL"
PUBLISH_LOCK_TIMEOUT_ENV = "TRIALSCREEN_PUBLISH_LOCK_TIMEOUT"
DEFAULT_PUBLISH_LOCK_TIMEOUT = "60s"
_LOCK_TIMEOUT = re.compile(r"^\d+(ms|s|min|h)?$")


def transform_url(warehouse: str | Path) -> str:
    """The URL of dbt, the quality gate, publish and the reports: ``$TRIALSCREEN_TRANSFORM_URL``
    when the warehouse is PostgreSQL and that variable names a role on the same database (the
    compose deployment: the loader lands, the transformer builds and publishes), else the
    warehouse URL itself."""
    url = WarehouseUrl.parse(warehouse)
    override = os.environ.get(TRANSFORM_URL_ENV, "").strip()
    if url.engine != "postgres" or not override:
        return str(warehouse)
    other = WarehouseUrl.parse(override)
    if other.engine != "postgres" or _database(other) != _database(url):
        raise ValueError(
            f"{TRANSFORM_URL_ENV} ({other.redacted()}) is not the warehouse's database "
            f"({url.redacted()}): the transformer must build where the loader lands"
        )
    return override


def _database(url: WarehouseUrl) -> tuple[str, int, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url.url or "")
    return (parts.hostname or "", parts.port or 5432, parts.path.strip("/"))


class PublishLockTimeout(RuntimeError):
    """Publish could not lock a published table in time: nothing was published."""


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


# --- run bookkeeping -------------------------------------------------------------------


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
}
# what a change of which rebuilds the derived layers: the dbt project (models, macros, seeds)
_PROJECT_PARTS = ("dbt_project.yml", "models", "macros", "seeds")


@dataclass(frozen=True)
class BuildPlan:
    """How tonight's dbt build treats the incremental models."""

    fingerprint: str
    through_load_id: int
    after_load_id: int | None  # None: rebuild (full refresh)
    reason: str | None  # why a rebuild

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
    return BuildPlan(fingerprint, through, after, None)


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
        }
        wh.load_frame(BUILD_STATE_TABLE, pl.DataFrame([row], schema=BUILD_STATE_COLUMNS))


def plan_vars(plan: BuildPlan) -> dict[str, Any]:
    """The dbt variables a build plan adds to :func:`dbt_vars` (``trialscreen run`` and the
    DAG alike): the load id the incremental models continue from; none on a full rebuild."""
    return {} if plan.after_load_id is None else {"incremental_after_load_id": plan.after_load_id}


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
        seed_and_build(
            transform_url(warehouse),
            screening_date,
            run_id,
            extra_vars=extra,
            callbacks=callbacks,
            full_refresh=plan.full_refresh,
            # an incremental night: the fingerprint (seed files included) is the last
            # build's, so the reference tables it loaded stay
            seeds=plan.full_refresh,
        )
        _record_build(warehouse, run_id, plan)
    return plan


def candidate_schema_map() -> dict[str, str]:
    return {s: s + CANDIDATE_SUFFIX for s in PUBLISHED_SCHEMAS}


def validate(warehouse: str | Path, reports_dir: Path, run_id: str, screening_date: date) -> Any:
    """Validate the raw rows not validated yet and the candidate tables; record the result
    on the run, and when the gate passes, the highest load id it covered.

    The feeds suite reads the rows with ``after_load_id < load_id <= through_load_id``:
    after the last load a gate passed (any run's, this one excluded) through the latest
    load, so rows landed by an abandoned run, or by a run whose gate failed, are checked
    by the next gate, not published unchecked."""
    from trialscreen.ingest import LOADS_TABLE
    from trialscreen.validate import validate as gx_validate

    with run_lock(warehouse):
        with Warehouse.connect(warehouse) as wh:
            after = wh.scalar(
                f"select coalesce(max(validated_load_id), 0) from {RUNS_TABLE} "
                f"where run_id <> {wh.param}",
                [check_run_id(run_id)],
            )
            through = wh.scalar(f"select coalesce(max(load_id), 0) from {LOADS_TABLE}")
        scope = {"after_load_id": int(after or 0), "through_load_id": int(through or 0)}
        outcome = gx_validate(
            transform_url(warehouse),
            Path(reports_dir),
            run_id,
            screening_date,
            schema_map=candidate_schema_map(),
            settings={"feeds": scope},
        )
        _update_run(
            warehouse,
            run_id,
            validation_result=outcome.as_json(),
            validated_load_id=scope["through_load_id"] if outcome.success else None,
        )
    return outcome


def _tables_in(wh: Warehouse, schema_name: str) -> list[str]:
    rows = wh.query(
        "select table_name from information_schema.tables "
        f"where table_schema = {wh.param} and table_type = 'BASE TABLE' order by table_name",
        [schema_name],
    )
    return [r[0] for r in rows]


def _publish_lock_timeout(value: str | None) -> str:
    timeout = (value or os.environ.get(PUBLISH_LOCK_TIMEOUT_ENV) or "").strip()
    timeout = timeout or DEFAULT_PUBLISH_LOCK_TIMEOUT
    if not _LOCK_TIMEOUT.match(timeout):
        raise ValueError(
            f"{PUBLISH_LOCK_TIMEOUT_ENV}: '{timeout}' is not a PostgreSQL duration such as "
            "500ms, 60s or 5min"
        )
    return timeout


def publish(warehouse: str | Path, run_id: str, lock_timeout: str | None = None) -> dict[str, int]:
    """Swap every candidate table into its published schema in one transaction.

    Runs as the transformer (:func:`transform_url`), which owns the candidate and published
    schemas. Tables are copied (``create table as``) rather than renamed so that the
    PostgreSQL default privileges of the published schema apply to them (analysts keep their
    grants, ``roles.py``). Each table lock is waited for at most ``lock_timeout``
    (``$TRIALSCREEN_PUBLISH_LOCK_TIMEOUT``, default 60s, ``set local lock_timeout``): a long
    analyst query on a published table then fails the publish with
    :class:`PublishLockTimeout` rather than stalling the night (and every query queued
    behind it); the transaction rolls back and yesterday's tables stay published.
    """
    timeout = _publish_lock_timeout(lock_timeout)
    published: dict[str, int] = {}
    staged: dict[Path, Path] = {}  # DuckDB: the readers' files, staged -> published path
    committed = False
    with run_lock(warehouse):
        with Warehouse.connect(warehouse) as wh:
            _refuse_abandoned(wh, run_id)
        table = ""
        with Warehouse.connect(transform_url(warehouse)) as tw:
            if isinstance(tw, DuckDBWarehouse):
                staged = _stage_reader_files(tw, warehouse)
            try:
                with tw.transaction():
                    if tw.engine == "postgres":
                        tw.execute("select set_config('lock_timeout', %s, true)", [timeout])
                    for target in PUBLISHED_SCHEMAS:
                        source = target + CANDIDATE_SUFFIX
                        tables = [identifier(t) for t in _tables_in(tw, source)]
                        if not tables:
                            continue
                        tw.ensure_schema(target)
                        for name in tables:
                            table = f"{target}.{name}"
                            tw.execute(f"drop table if exists {table}")
                            tw.execute(f"create table {table} as select * from {source}.{name}")
                            published[table] = int(tw.scalar(f"select count(*) from {table}"))
                committed = True
            except Exception as exc:
                if getattr(exc, "pgcode", None) != "55P03":  # lock_not_available
                    raise
                raise PublishLockTimeout(
                    f"publish: {table} stayed locked for more than {timeout} (a long query "
                    "holds it, e.g. an analyst's); nothing was published and yesterday's "
                    "tables stay in place. Publish again when it ends, or raise "
                    f"{PUBLISH_LOCK_TIMEOUT_ENV}"
                ) from None
            finally:
                if not committed:  # readers keep yesterday's file
                    for staged_path in staged:
                        staged_path.unlink(missing_ok=True)
        for staged_path, reader_file in staged.items():  # committed: new readers see tonight
            swap_in(staged_path, reader_file)
        _update_run(warehouse, run_id, status="published", finished_at=_now())
    log.info("published", extra={"run_id": run_id, "tables": len(published)})
    return published


def _stage_reader_files(tw: DuckDBWarehouse, warehouse: str | Path) -> dict[Path, Path]:
    """Each reader schema's candidate tables copied into a new file beside its published
    file (``warehouse.published_file``); swapped in after the warehouse's publish commits."""
    staged: dict[Path, Path] = {}
    for schema_name in READER_SCHEMAS:
        target = published_file(warehouse, schema_name)
        tables = [identifier(t) for t in _tables_in(tw, schema_name + CANDIDATE_SUFFIX)]
        if target is None or not tables:
            continue
        staged[tw.export_schema(schema_name + CANDIDATE_SUFFIX, tables, target)] = target
    return staged


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
    with Warehouse.connect(transform_url(warehouse)) as wh:
        if not wh.table_exists("marts.screening_results"):
            return {}
        rows = wh.query(
            "select trial_id, cohort_id, candidate_status, count(*) "
            "from marts.screening_results group by 1, 2, 3"
        )
    return {f"{t}/{c}/{s}": int(n) for t, c, s, n in rows}


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
