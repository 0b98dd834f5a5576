"""The audit and publish halves of write-audit-publish: :func:`validate` (Great
Expectations on the raw rows no gate passed yet and on the candidate tables) and
:func:`publish` (the candidate tables replace the published ones in one transaction; on
DuckDB the analysts' read-only file is swapped in after it commits).
"""

from __future__ import annotations

import logging
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from trialscreen.pipeline.runs import RUNS_TABLE, _now, _refuse_abandoned, _update_run
from trialscreen.pipeline.transformer import transform_url
from trialscreen.run_ids import check_run_id
from trialscreen.warehouse import (
    DuckDBWarehouse,
    Warehouse,
    identifier,
    published_file,
    run_lock,
    swap_in,
)

# the name the records carried before the package split (the JSON logs' "logger" field)
log = logging.getLogger("trialscreen.pipeline")

# dbt writes these schemas as <schema>_candidate during a run; publish swaps them in.
PUBLISHED_SCHEMAS = ("marts", "restricted")
CANDIDATE_SUFFIX = "_candidate"
# on DuckDB, the schemas also published as a read-only file analysts open during a run
# (warehouse.published_file); restricted is not: coordinators get the worklist files
READER_SCHEMAS = ("marts",)
PUBLISH_LOCK_TIMEOUT_ENV = "TRIALSCREEN_PUBLISH_LOCK_TIMEOUT"
DEFAULT_PUBLISH_LOCK_TIMEOUT = "60s"
_LOCK_TIMEOUT = re.compile(r"^\d+(ms|s|min|h)?$")


class PublishLockTimeout(RuntimeError):
    """Publish could not lock a published table in time: nothing was published."""

    # its public name: errors.keeps_text shows its text by that name, tracebacks print it
    __module__ = "trialscreen.pipeline"


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
