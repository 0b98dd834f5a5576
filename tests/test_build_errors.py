"""A failed dbt build keeps the database's text out of the process output and keeps it in
``restricted.build_errors`` (docs/decisions.md, "dbt's errors").

A database error quotes what it failed on: DuckDB's ``invalid date field format:
"<value>"`` of a failed cast, PostgreSQL's ``Key (mrn)=(<value>)``. The value may be an MRN,
a name or a birth date. Here a model of a small dbt project (``TRIALSCREEN_DBT_PROJECT_DIR``;
the real project costs ~40 CPU-s a build) casts a seed's value, the sentinel
``MRN-SENTINEL-4242``, to a date, and real dbt on a real DuckDB fails it. The sentinel is
then looked for in

* the stdout and stderr of ``trialscreen -vv run`` (a subprocess: dbt's own console output,
  trialscreen's JSON log at DEBUG, the run's summary), every file of its reports directory,
  ``audit.pipeline_runs`` and ``audit.build_nodes``;
* the text of the :class:`DbtBuildError` that ``pipeline.build`` raises in this process, the
  log records of every logger at DEBUG and what the process wrote on its file descriptors;

and must be found in ``restricted.build_errors`` only, under the failed model. The DAG's dbt
(``trialscreen/bin/dbt``, which Cosmos runs) is checked on the same project: its JSON lines
keep dbt's node statuses and lose the value, and it keeps the value in the same table.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from trialscreen import pseudonym
from trialscreen.dbt_output import DBT_PYTHON_ENV, DBT_WRAPPER
from trialscreen.dbt_parse import PARSE_CACHE_FOLDER
from trialscreen.pipeline import BUILD_ERRORS_TABLE, build
from trialscreen.transform import DBT_PROJECT_DIR, PROJECT_DIR_ENV, DbtBuildError, run_dbt
from trialscreen.warehouse import Warehouse

SENTINEL = "MRN-SENTINEL-4242"
FAILING = "model.trialscreen.stg_sentinel__birth_dates"
SCREENING_DATE = date(2026, 11, 20)
KEY = "build-errors-test-key"
TRIALSCREEN = str(Path(sys.executable).parent / "trialscreen")
# every test but the last builds a warehouse with dbt (a failing build, then the DAG's
# wrapper): out of `make test-fast`, as tests/dbt and tests/e2e are
pytestmark = pytest.mark.slow


def _project(root: Path) -> Path:
    """A dbt project of a seed and two tables: one casts the seed's value to a date (DuckDB
    refuses and quotes the value), one builds. The value is data, not code: the dbt docs the
    run writes show the models' SQL, never a seed's rows."""
    project = root / "dbt_project_sentinel"
    (project / "models").mkdir(parents=True)
    (project / "seeds").mkdir()
    shutil.copy(DBT_PROJECT_DIR / "profiles.yml", project / "profiles.yml")
    (project / "dbt_project.yml").write_text(
        "name: trialscreen\nversion: '0.1.0'\nconfig-version: 2\nprofile: trialscreen\n"
        "model-paths: [models]\nseed-paths: [seeds]\n"
        "models:\n  trialscreen:\n    +materialized: table\n"
    )
    (project / "seeds" / "sentinel_patients.csv").write_text(f"mrn\n{SENTINEL}\n")
    (project / "models" / "stg_sentinel__birth_dates.sql").write_text(
        "select cast(mrn as date) as birth_date from {{ ref('sentinel_patients') }}\n"
    )
    (project / "models" / "stg_sentinel__fine.sql").write_text("select 1 as ok\n")
    return project


@pytest.fixture(scope="module")
def failed_night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``trialscreen -vv run`` on an empty drop whose build fails on the sentinel."""
    root = tmp_path_factory.mktemp("build_errors")
    project = _project(root)
    drop = root / "drop"
    drop.mkdir()
    warehouse, reports = root / "wh.duckdb", root / "reports"
    env = {**os.environ, PROJECT_DIR_ENV: str(project), pseudonym.KEY_ENV: KEY}
    argv = [TRIALSCREEN, "-vv", "run", "--input", str(drop), "--allow-empty"]
    argv += ["--screening-date", SCREENING_DATE.isoformat(), "--warehouse", str(warehouse)]
    argv += ["--reports-dir", str(reports)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    return {
        "root": root,
        "project": project,
        "warehouse": warehouse,
        "reports": reports,
        "proc": proc,
    }


def _rows(warehouse: Path, sql: str) -> list[tuple[object, ...]]:
    with Warehouse.connect(warehouse) as wh:
        return [tuple(r) for r in wh.query(sql)]


def test_failed_build_prints_no_database_text(failed_night) -> None:
    proc = failed_night["proc"]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert SENTINEL not in proc.stdout and SENTINEL not in proc.stderr
    # what the operator reads instead: the model, and where its database text is
    assert FAILING in proc.stdout
    assert f"the database's message is kept in {BUILD_ERRORS_TABLE}" in proc.stdout
    # dbt's console said nothing of its own (its closing summary repeats each error)
    assert "Database Error" not in proc.stdout + proc.stderr
    assert "Completed with" not in proc.stdout + proc.stderr


def test_failed_build_keeps_the_text_in_restricted_only(failed_night) -> None:
    warehouse = failed_night["warehouse"]
    (run_id, message) = _rows(warehouse, "select run_id, message from audit.pipeline_runs")[0]
    assert SENTINEL not in message and FAILING in message
    assert f"kept in {BUILD_ERRORS_TABLE}" in message
    nodes = _rows(warehouse, "select * from audit.build_nodes")
    assert nodes and all(SENTINEL not in str(row) for row in nodes)
    kept = _rows(warehouse, f"select run_id, unique_id, message from {BUILD_ERRORS_TABLE}")
    assert [(r[0], r[1]) for r in kept] == [(run_id, FAILING)]
    assert SENTINEL in str(kept[0][2]) and "Conversion Error" in str(kept[0][2])
    # the reports written after the failed run (the report, its index) carry none of it
    files = [p for p in Path(failed_night["reports"]).rglob("*") if p.is_file()]
    assert files
    assert [p.name for p in files if SENTINEL in p.read_text(errors="replace")] == []


def test_the_exception_and_the_logs_carry_no_database_text(
    failed_night, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The same failure in this process (as the DAG's tasks and the CLI run it): the error's
    text names the model and the table, dbt writes nothing on stdout or stderr, no log record
    quotes the value."""
    mp = pytest.MonkeyPatch()
    mp.setenv(PROJECT_DIR_ENV, str(failed_night["project"]))
    mp.setenv(pseudonym.KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(DbtBuildError) as caught:
            build(failed_night["warehouse"], SCREENING_DATE, "build-errors-in-process")
    finally:
        mp.undo()
    error = caught.value
    assert SENTINEL not in str(error) and FAILING in str(error)
    assert f"kept in {BUILD_ERRORS_TABLE}" in str(error).splitlines()[0]
    assert any(SENTINEL in message for _, message in error.failures)  # for the caller only
    out, err = capfd.readouterr()
    assert SENTINEL not in out + err
    assert [r.name for r in caplog.records if SENTINEL in r.getMessage() + str(r.__dict__)] == []
    kept = _rows(
        failed_night["warehouse"],
        f"select unique_id from {BUILD_ERRORS_TABLE} where run_id = 'build-errors-in-process'",
    )
    assert kept == [(FAILING,)]


def test_dbt_warnings_come_back_through_our_logger(
    failed_night, caplog: pytest.LogCaptureFixture
) -> None:
    """dbt prints nothing; a warning it composes from the command (an empty selection) comes
    back as one ``trialscreen.dbt`` record with its text."""
    caplog.set_level(logging.WARNING, logger="trialscreen.dbt")
    run_dbt(
        "build",
        str(failed_night["warehouse"]),
        args=["--select", "no_such_model"],
        project_dir=failed_night["project"],
    )
    warnings = [r for r in caplog.records if r.name == "trialscreen.dbt"]
    events = {getattr(r, "event", None): getattr(r, "text", None) for r in warnings}
    assert "no_such_model" in str(events.get("NoNodesForSelectionCriteria")), events


# --- the DAG: Cosmos runs dbt through trialscreen/bin/dbt ---------------------------------------


def _wrapper(
    project: Path,
    warehouse: Path,
    *args: str,
    cache: Path | None = None,
    run_id: str = "dag-run",
) -> subprocess.CompletedProcess[str]:
    """``trialscreen/bin/dbt`` as Cosmos's producer runs it: in the copied project's folder,
    the connection in the environment, the run's vars on the command line (``cache``: the
    user's cache folder, where the kept parse is)."""
    env = {
        **os.environ,
        DBT_PYTHON_ENV: sys.executable,
        "TRIALSCREEN_DBT_TARGET": "duckdb",
        "TRIALSCREEN_DUCKDB_PATH": str(warehouse),
        "DO_NOT_TRACK": "1",
        **({"XDG_CACHE_HOME": str(cache)} if cache is not None else {}),
    }
    argv = [str(DBT_WRAPPER), *args, "--project-dir", str(project), "--profiles-dir"]
    argv += [str(project), "--vars", f'{{"run_id": "{run_id}", "screening_date": "2026-11-20"}}']
    return subprocess.run(
        argv, env=env, cwd=project, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_dags_dbt_keeps_statuses_and_takes_out_the_database_text(
    failed_night, tmp_path: Path
) -> None:
    """Cosmos reads each node's status from dbt's JSON lines and logs their messages: the
    wrapper's lines carry the statuses dbt gave, the failed model's kind of error, and not the
    value; the value is in restricted.build_errors under the run id of ``--vars``."""
    project = tmp_path / "project"
    shutil.copytree(failed_night["project"], project)
    warehouse = tmp_path / "dag.duckdb"
    proc = _wrapper(project, warehouse, "build", "--log-format", "json")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert SENTINEL not in proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = {
        e["data"]["node_info"]["unique_id"]: e["data"]["node_info"]["node_status"]
        for e in events
        if e["info"]["name"] in ("LogModelResult", "LogSeedResult")
    }
    assert results == {
        "seed.trialscreen.sentinel_patients": "success",
        "model.trialscreen.stg_sentinel__fine": "success",
        FAILING: "error",
    }
    (error,) = [e for e in events if e["info"]["name"] == "RunResultError"]
    assert error["data"]["node_info"]["unique_id"] == FAILING
    assert error["info"]["msg"].startswith("Runtime Error in model stg_sentinel__birth_dates")
    assert f"kept in {BUILD_ERRORS_TABLE}" in error["info"]["msg"]
    kept = _rows(warehouse, f"select run_id, unique_id, message from {BUILD_ERRORS_TABLE}")
    assert [(r[0], r[1]) for r in kept] == [("dag-run", FAILING)] and SENTINEL in str(kept[0][2])


def test_a_model_tasks_retry_prints_text_without_the_database_text(
    failed_night, tmp_path: Path
) -> None:
    """A model task's retry runs dbt without ``--log-format json``: it reads text lines, the
    value taken out as in the producer's."""
    project = tmp_path / "project"
    shutil.copytree(failed_night["project"], project)
    warehouse = tmp_path / "retry.duckdb"
    proc = _wrapper(project, warehouse, "build", "--select", "+stg_sentinel__birth_dates")
    assert proc.returncode == 1
    assert SENTINEL not in proc.stdout + proc.stderr
    assert not any(line.startswith("{") for line in proc.stdout.splitlines())
    assert "Runtime Error in model stg_sentinel__birth_dates" in proc.stdout
    assert "Completed with 1 error" in proc.stdout


def test_the_dags_dbt_reads_the_parse_trialscreen_keeps(failed_night, tmp_path: Path) -> None:
    """The producer's dbt does not parse the project every night: the first build keeps its
    parse in the cache folder (one file), the next night's build, with other run vars, reads
    that file (reading touches it) and reports the same node statuses."""
    project = tmp_path / "project"
    shutil.copytree(failed_night["project"], project)
    cache = tmp_path / "cache"
    folder = cache.joinpath(*PARSE_CACHE_FOLDER)
    nights = []
    for night in ("first", "second"):
        warehouse = tmp_path / "night.duckdb"
        args = ("build", "--log-format", "json")
        proc = _wrapper(project, warehouse, *args, cache=cache, run_id=f"{night}-night")
        assert proc.returncode == 1, proc.stdout[-2000:]
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        nights.append(
            {
                e["data"]["node_info"]["unique_id"]: e["data"]["node_info"]["node_status"]
                for e in events
                if e["info"]["name"] in ("LogModelResult", "LogSeedResult")
            }
        )
        (kept,) = folder.glob("*.msgpack")
        if night == "first":
            os.utime(kept, (946684800, 946684800))  # 2000-01-01: untouched until read
    assert kept.stat().st_mtime > 946684800
    assert nights[0] == nights[1] and nights[0][FAILING] == "error"


def test_a_failed_models_name_leads_the_runs_line_whatever_failed_first() -> None:
    """A DuckDB engine error in one model invalidates the database, and the queries dbt's
    other threads had under way fail with it, some finishing before the model's own failure:
    the run's line (cut to a length) still names the model, listed first."""
    from trialscreen.errors import summarize
    from trialscreen.transform import DbtBuildError

    tests = [(f"test.trialscreen.row_checks_int_labs_{n}.{n:010x}", "db") for n in range(15)]
    model = ("model.trialscreen.int_criteria__diagnosis", "INTERNAL Error: ...")
    error = DbtBuildError("build", [*tests[:9], model, *tests[9:]])
    assert error.failures[0] == model and error.failures[1:] == tests
    line = summarize(error)
    assert "\n" not in line and "model.trialscreen.int_criteria__diagnosis" in line, line
