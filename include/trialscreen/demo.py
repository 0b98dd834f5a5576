"""``trialscreen demo``: generate a population, run the nightly DAG on DuckDB, print where to look.

Everything lands under one directory (default ``./demo``): ``feeds/`` (the generated drop
and its expected outcomes), ``trialscreen.duckdb`` (the warehouse), ``reports/`` and
``airflow/`` (a throwaway AIRFLOW_HOME with a migrated SQLite metadata DB). The DAG runs
in-process with ``dag.test()`` — the same tasks the scheduler runs at 02:00. With
``--no-airflow`` the same steps run through ``trialscreen run`` instead.

The demo makes its own pseudonym key when ``TRIALSCREEN_PSEUDONYM_KEY`` is unset and keeps
it in ``demo/.pseudonym_key`` so a second demo run gives the same patient keys; a real
deployment sets the variable from its secret store.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from trialscreen import pseudonym

REPO = Path(__file__).resolve().parents[2]
GATE_TASK = "quality_gate"  # the DAG's gate task (dags/trialscreen_nightly.py)


def _demo_key(out: Path) -> None:
    if os.environ.get(pseudonym.KEY_ENV):
        return
    key_file = out / ".pseudonym_key"
    if not key_file.exists():
        key_file.write_text(pseudonym.new_key())
        key_file.chmod(0o600)
    os.environ[pseudonym.KEY_ENV] = key_file.read_text().strip()


def _airflow_env(home: Path) -> None:
    """Must run before airflow is imported: Airflow reads its configuration at import."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
        }
    )


def run_dag(
    feeds: Path, warehouse: Path, reports: Path, screening_date: date, home: Path
) -> tuple[str, bool]:
    """Run the nightly DAG once with ``dag.test()``; returns the DAG run's state and whether
    the quality gate blocked publication (its task failed: ``GateBlocked``), which the demo
    reports as ``trialscreen run`` does (exit 3), apart from any other failure."""
    _airflow_env(home)
    from trialscreen.transform import compile_manifest

    compile_manifest()
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.dags["trialscreen_nightly"]
    with _output_to(home / "dag_test.log"):
        run = dag.test(
            logical_date=datetime(
                screening_date.year, screening_date.month, screening_date.day, 2, tzinfo=UTC
            ),
            run_conf={
                "input_dir": str(feeds),
                "warehouse": str(warehouse),
                "reports_dir": str(reports),
            },
        )
    return str(run.state), gate_blocked(run)


def gate_blocked(run: Any) -> bool:
    """Whether the quality gate blocked this DAG run: the gate task itself failed (it fails
    only by ``GateBlocked``, without retries); a run that failed before the gate leaves it
    ``upstream_failed``, which is a failure, not a blocked gate."""
    gate = run.get_task_instance(GATE_TASK)
    return gate is not None and str(gate.state) == "failed"


@contextlib.contextmanager
def _output_to(log_file: Path) -> Iterator[None]:
    """Send everything written to stdout/stderr (Airflow task logs, dbt's console output)
    to a file at the descriptor level, so the demo prints a summary, not 2,000 log lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_file.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_demo(
    patients: int,
    seed: int,
    out: Path,
    screening_date: date | None = None,
    use_airflow: bool = True,
) -> int:
    from trialscreen.pipeline import candidate_counts, run_pipeline
    from trialscreen.synth import generate

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _demo_key(out)
    screening_date = screening_date or date.today()
    feeds, warehouse, reports = out / "feeds", out / "trialscreen.duckdb", out / "reports"
    started = time.perf_counter()
    blocked = False  # the quality gate blocked publication: exit 3, as trialscreen run
    print(f"1/3 generating {patients} synthetic patients (seed {seed}) into {feeds}")
    generate(patients=patients, seed=seed, out=feeds, screening_date=screening_date)
    if use_airflow:
        print(f"2/3 running the nightly DAG (dag.test) as of {screening_date} on {warehouse}")
        state, blocked = run_dag(feeds, warehouse, reports, screening_date, out / "airflow")
        ok = state == "success"
        if blocked:
            state += " (the quality gate blocked publication: nothing published, see Data Docs)"
        print(f"    DAG run: {state} (task logs: {out / 'airflow' / 'dag_test.log'})")
    else:
        print(f"2/3 running the nightly job as of {screening_date} on {warehouse}")
        result = run_pipeline(feeds, screening_date, warehouse, reports_dir=reports)
        print(result.summary())
        ok, blocked = result.published, result.gate_blocked
    elapsed = time.perf_counter() - started
    print(f"3/3 done in {elapsed:.0f} s. Patients per trial/cohort/candidate status:")
    for name, n in sorted(candidate_counts(warehouse).items()):
        print(f"    {name:45} {n}")
    print("Where to look:")
    print(f"  screening report  {reports / 'latest' / 'report.html'}")
    docs = reports / "data_docs" / "gx" / "uncommitted" / "data_docs" / "local_site"
    print(f"  Data Docs         {docs / 'index.html'}")
    print(f"  warehouse         {warehouse}")
    query = f"duckdb.connect('{warehouse}', read_only=True).sql('from marts.eligible_candidates')"
    print(f'                    (.venv/bin/python -c "import duckdb; {query}.show()")')
    print(f"  known answers     {feeds / 'expected'}")
    return 0 if ok else 3 if blocked else 1
