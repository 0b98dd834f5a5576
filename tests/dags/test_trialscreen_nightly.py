"""The nightly DAG: it loads cleanly, and a real ``dag.test()`` run publishes exactly what
``trialscreen run`` publishes on the same input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # migrates an Airflow metadata DB and runs the DAG

REPO = Path(__file__).resolve().parents[2]
SCREENING_DATE = date(2026, 11, 20)
MART_TABLES = ("criterion_evaluations", "screening_results", "eligible_candidates")


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite metadata DB in a temp AIRFLOW_HOME (what `airflow dags test` needs)."""
    from trialscreen.transform import compile_manifest

    compile_manifest()
    home = tmp_path_factory.mktemp("airflow_home")
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
        }
    )
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=300,
    )
    return home


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path):
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(REPO / "dags"))
    print(f"\nDagBag load: {time.perf_counter() - started:.2f} s")  # reported, not asserted
    return bag


def test_dagbag_has_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "trialscreen_nightly" in dagbag.dags


def test_nightly_dag_is_scheduled_safely(dagbag) -> None:
    dag = dagbag.dags["trialscreen_nightly"]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "trialscreen" in dag.tags
    assert dag.doc_md and "screening date" in dag.doc_md
    assert dag.schedule == "0 2 * * *"
    assert dag.timetable.expression == "0 2 * * *"
    assert set(dag.params.keys()) == {"trial", "input_dir", "warehouse", "reports_dir"}
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id


def test_dbt_runs_as_cosmos_tasks_from_the_manifest(dagbag) -> None:
    dag = dagbag.dags["trialscreen_nightly"]
    ids = {t.task_id for t in dag.tasks}
    assert "dbt.criterion_evaluations_run" in ids
    assert "dbt.stg_fhir__observations_run" in ids
    order = ["start_run", "ingest_fhir", "prepare_build", "validate", "publish", "reports"]
    assert set(order) <= ids
    assert "validate" in dag.get_task("publish").upstream_task_ids


def test_dag_file_parse_does_not_call_dbt(dagbag) -> None:
    stats = [s for s in dagbag.dagbag_stats if "trialscreen_nightly" in str(s.file)]
    assert stats and stats[0].dag_num == 1
    print(f"\ntrialscreen_nightly.py parse: {stats[0].duration}")  # reported, not asserted


@pytest.fixture(scope="session")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trialscreen.synth import generate

    out = tmp_path_factory.mktemp("dag_population")
    generate(patients=120, seed=11, out=out, screening_date=SCREENING_DATE)
    return out


def _marts(warehouse: Path) -> dict[str, list[tuple]]:
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(warehouse) as wh:
        result = {}
        for table in MART_TABLES:
            frame = wh.query_frame(f"select * from marts.{table}")
            frame = frame.drop([c for c in ("run_id",) if c in frame.columns])
            result[table] = sorted(frame.rows(), key=str)
        return result


def test_dag_test_run_publishes_what_the_cli_publishes(
    dagbag,
    population: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from trialscreen import pseudonym
    from trialscreen.pipeline import run_pipeline

    monkeypatch.setenv(pseudonym.KEY_ENV, "dag-test-key")
    cli_wh = tmp_path / "cli.duckdb"
    cli = run_pipeline(population, SCREENING_DATE, cli_wh, reports_dir=tmp_path / "cli_reports")
    assert cli.published, cli.message

    dag_wh = tmp_path / "dag.duckdb"
    dag = dagbag.dags["trialscreen_nightly"]
    started = time.perf_counter()
    run = dag.test(
        logical_date=datetime(2026, 11, 20, 2, 0, tzinfo=UTC),
        run_conf={
            "input_dir": str(population),
            "warehouse": str(dag_wh),
            "reports_dir": str(tmp_path / "dag_reports"),
        },
    )
    print(f"\ndag.test(): {time.perf_counter() - started:.1f} s")  # reported, not asserted
    assert run.state == "success"
    assert _marts(dag_wh) == _marts(cli_wh)
    assert (tmp_path / "dag_reports" / "latest" / "report.html").exists()

    # the Airflow task logs of the whole run (dag.test prints them) carry no PHI
    task_logs = capfd.readouterr()
    task_logs = task_logs.out + task_logs.err
    assert "prepare_build" in task_logs and len(task_logs) > 10_000
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(dag_wh) as wh:
        phi = wh.query(
            "select patient_mrn, family_name, given_name, cast(birth_date as varchar) "
            "from intermediate.int_patients"
        )
    mrns = {r[0] for r in phi if r[0]}
    names = {v for r in phi for v in r[1:3] if v and len(v) >= 5}
    dates = {r[3] for r in phi if r[3]}
    assert len(mrns) > 100
    tokens = set(re.findall(r"[A-Za-z0-9-]+", task_logs))
    leaked = sorted((mrns | names | dates) & tokens)
    assert leaked == [], f"PHI in Airflow task logs: {len(leaked)} values"
    docs = (tmp_path / "dag_reports" / "dbt_docs" / "index.html").read_text()
    assert "criterion_evaluations" in docs  # the analysts' lineage and column docs
