"""A nightly build that fails in a model leaves yesterday's published tables in place, says
which model in one PHI-free line (CLI output and ``audit.pipeline_runs.message``), and the
next night runs and publishes (issue 14: at 300,000 patients DuckDB raised an INTERNAL error
in ``int_criteria__diagnosis``, which invalidates the database instance; docs/decisions.md,
"DuckDB 2.0.0: dict-surviving hash join").

The failure is provoked cheaply: a copy of the dbt project (``TRIALSCREEN_DBT_PROJECT_DIR``)
gives ``int_criteria__diagnosis`` a pre-hook that runs the minimal repro of that INTERNAL error
on synthetic tables (tests/dbt/test_duckdb_upstream_bugs.py, a few seconds), then raises in the
database in case the locked DuckDB no longer has the bug. The model fails at run time after
its parents were built, as the engine error did.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from tests.dbt import test_duckdb_upstream_bugs as bugs
from tests.e2e.first_night import FirstNight
from trialscreen import cli, pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.transform import DBT_PROJECT_DIR, PROJECT_DIR_ENV
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # two pipeline runs (one failing) after the shared first night

SCREENING_DATE = date(2026, 11, 20)
FAILING_MODEL = "int_criteria__diagnosis"
PUBLISHED = (
    "marts.criterion_evaluations",
    "marts.screening_results",
    "marts.eligible_candidates",
    "restricted.candidate_contacts",
)


def _failing_project(root: Path) -> Path:
    """A copy of dbt_project/ whose FAILING_MODEL raises DuckDB's INTERNAL error (which
    invalidates the database instance), or at least an error, when it runs."""
    project = root / "dbt_project_failing"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    repro = [statement.strip() for statement in bugs.TABLES.split(";") if statement.strip()]
    hooks = [
        "create schema if not exists scratch",
        "use scratch",
        *repro,
        f"set memory_limit = '{bugs.MEMORY}'",
        f"create table out as {bugs.CHAINED}",
        "select error('simulated engine failure')",
    ]
    config_file = project / "dbt_project.yml"
    config = yaml.safe_load(config_file.read_text())
    clinical = config["models"]["trialscreen"]["intermediate"].setdefault("clinical", {})
    clinical[FAILING_MODEL] = {"+pre-hook": hooks}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def _snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    with Warehouse.connect(warehouse) as wh:
        return {t: sorted(wh.query_frame(f"select * from {t}").rows(), key=str) for t in PUBLISHED}


def _run_row(warehouse: Path, run_id: str) -> tuple[str, str]:
    with Warehouse.connect(warehouse) as wh:
        status, message = wh.query(
            "select status, message from audit.pipeline_runs where run_id = ?", [run_id]
        )[0]
    return status, message


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, first_night: FirstNight):
    root = tmp_path_factory.mktemp("build_failure")
    # night 1, published: a copy of the suite's shared first night (tests/e2e/first_night.py,
    # 40 generated patients screened on SCREENING_DATE), whose drop and key the next nights use
    assert first_night.screening_date == SCREENING_DATE
    drop, warehouse = first_night.drop, root / "wh.duckdb"
    first_night.copy_to(warehouse, root / "r")
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, first_night.key)
    try:
        before = _snapshot(warehouse)

        # night 2: the build fails in FAILING_MODEL; run through the CLI as the operator does
        mp.setenv(PROJECT_DIR_ENV, str(_failing_project(root)))
        second_date = SCREENING_DATE + timedelta(days=1)
        with pytest.MonkeyPatch.context() as out:
            lines: list[str] = []
            out.setattr("builtins.print", lambda *a, **_k: lines.append(" ".join(map(str, a))))
            status = cli.main(
                [
                    "run",
                    "--input",
                    str(drop),
                    "--screening-date",
                    second_date.isoformat(),
                    "--warehouse",
                    str(warehouse),
                    "--reports-dir",
                    str(root / "r"),
                ]
            )
        mp.delenv(PROJECT_DIR_ENV)
        after_failure = _snapshot(warehouse)
        with Warehouse.connect(warehouse) as wh:
            failed_run = wh.query(
                "select run_id from audit.pipeline_runs where screening_date = ?",
                [second_date],
            )[0][0]

        # night 3: the project is whole again
        third = run_pipeline(
            drop, second_date + timedelta(days=1), warehouse, reports_dir=root / "r"
        )
    finally:
        mp.undo()
    yield {
        "warehouse": warehouse,
        "before": before,
        "after_failure": after_failure,
        "cli_status": status,
        "cli_output": "\n".join(lines),
        "failed_run": failed_run,
        "third": third,
    }


def test_failed_build_keeps_yesterdays_published_tables(nights) -> None:
    assert nights["cli_status"] == 1
    assert nights["after_failure"] == nights["before"]


def test_failed_build_says_which_model_in_one_line(nights) -> None:
    status, message = _run_row(nights["warehouse"], nights["failed_run"])
    assert status == "failed"
    assert "\n" not in message and FAILING_MODEL in message, message
    assert "simulated engine failure" not in message  # the database's text is withheld
    first_line = nights["cli_output"].splitlines()[0]
    assert "failed" in first_line and FAILING_MODEL in first_line, nights["cli_output"]


def test_failed_build_keeps_the_database_text_in_restricted(nights) -> None:
    """The engine's text of the failed model is kept where only those who may read records
    read it, and the run's line says so (docs/decisions.md, "dbt's errors")."""
    _, message = _run_row(nights["warehouse"], nights["failed_run"])
    assert "the database's message is kept in restricted.build_errors" in message
    with Warehouse.connect(nights["warehouse"]) as wh:
        kept = wh.query(
            "select unique_id, message from restricted.build_errors where run_id = ?",
            [nights["failed_run"]],
        )
    assert f"model.trialscreen.{FAILING_MODEL}" in {r[0] for r in kept}, kept
    assert all(r[1] for r in kept)


def test_next_night_runs_and_publishes(nights) -> None:
    third = nights["third"]
    assert third.published, third.message
    status, message = _run_row(nights["warehouse"], third.run_id)
    assert status == "published" and not message
    with Warehouse.connect(nights["warehouse"]) as wh:
        dates = {
            r[0] for r in wh.query("select distinct screening_date from marts.screening_results")
        }
    assert dates == {third.screening_date}
