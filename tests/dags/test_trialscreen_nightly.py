"""The nightly DAG: it loads cleanly, and a real ``dag.test()`` run publishes exactly what
``trialscreen run`` publishes on the same input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from trialscreen.demo import gate_blocked

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
    assert set(dag.params.keys()) == {
        "trials",
        "input_dir",
        "warehouse",
        "reports_dir",
        "full_refresh",
    }
    assert dag.params["trials"] == ["axiom"]
    assert dag.params["full_refresh"] is False  # incremental unless asked (or planned)
    for task in dag.tasks:
        if task.task_id == "quality_gate":
            assert task.retries == 0  # a blocked gate fails once: one alert, no retry noise
        elif task.task_id == "dbt.dbt_producer_watcher":
            assert task.retries == 0  # its retry skips: the model tasks retry their model
        else:
            assert task.retries >= 1, task.task_id


def test_dbt_runs_as_one_build_with_a_task_per_model(dagbag) -> None:
    from cosmos.constants import InvocationMode

    dag = dagbag.dags["trialscreen_nightly"]
    ids = {t.task_id for t in dag.tasks}
    producer = dag.get_task("dbt.dbt_producer_watcher")
    assert "dbt.criterion_evaluations_run" in ids
    assert "dbt.stg_fhir__observations_run" in ids
    assert not [i for i in ids if i.endswith("_test") or i.endswith("_seed")]
    # the model tasks with no model upstream start after the build (they read its results)
    assert "dbt.stg_config__trials_run" in producer.downstream_task_ids
    # ... when it ran, whether it succeeded or failed (not when it never ran)
    assert dag.get_task("dbt.stg_config__trials_run").trigger_rule == "one_done"
    assert dag.get_task("dbt.dbt_producer_watcher").upstream_task_ids == {"prepare_build"}
    # dbt runs in its own process, its result lines read as they come (in-process, Cosmos
    # wrote an XCom from inside dbt's threads for every event, which serialized the build)
    assert producer.invocation_mode == InvocationMode.SUBPROCESS
    assert producer.append_env  # the worker's environment reaches dbt (TRIALSCREEN_PG_*)
    order = ["start_run", "ingest_fhir", "prepare_build", "validate", "publish", "reports"]
    assert set(order) <= ids
    # XComs flow only where data does: the run id comes from the context, not start_run
    assert dag.get_task("ingest_fhir").upstream_task_ids == {"detect_new_files"}
    assert dag.get_task("quality_gate").upstream_task_ids == {"validate"}
    assert dag.get_task("publish").upstream_task_ids == {"quality_gate"}
    assert dag.get_task("notify").upstream_task_ids == {"publish"}
    assert dag.get_task("start_run").upstream_task_ids == {"check_missed_nights"}
    # the plan is recorded after the whole build succeeded, before the gate reads it
    record = dag.get_task("record_build")
    assert {"prepare_build", "dbt.dbt_producer_watcher_done"} <= record.upstream_task_ids
    leaves = {
        t.task_id
        for t in dag.tasks
        if t.task_id.startswith("dbt.") and not t.downstream_task_ids & ids - {"record_build"}
    }
    assert "dbt.candidate_contacts_run" in leaves and leaves <= record.upstream_task_ids
    assert dag.get_task("validate").upstream_task_ids == {"record_build"}


class _PreparedBuild:
    """What the producer's templates read of the task instance: prepare_build's XCom."""

    def __init__(self, settings: dict[str, object]) -> None:
        self.settings = settings

    def xcom_pull(self, task_ids: str) -> dict[str, object]:
        assert task_ids == "prepare_build"
        return self.settings


def test_the_build_flags_follow_the_plan(dagbag) -> None:
    """--full-refresh and the seeds only when prepare_build's plan says full refresh: the
    producer's templated fields rendered as the worker renders them, from that XCom."""
    dag = dagbag.dags["trialscreen_nightly"]
    producer = dag.get_task("dbt.dbt_producer_watcher")
    assert {"full_refresh", "dbt_cmd_flags", "vars"} <= set(producer.template_fields)
    env = dag.get_template_env(force_sandboxed=False)
    # an incremental night keeps the seeds and their own tests, as trialscreen run's build
    # (transform.SEEDS_KEPT)
    kept = ["--exclude=resource_type:seed", "--indirect-selection=cautious"]
    for full_refresh, skip in ((True, []), (False, kept)):
        context = {"ti": _PreparedBuild({"full_refresh": full_refresh})}
        rendered = producer.render_template(producer.full_refresh, context, env)
        assert rendered is full_refresh
        flags = [f for f in producer.render_template(producer.dbt_cmd_flags, context, env) if f]
        assert [f for f in flags if f.startswith(("--exclude", "--indirect"))] == skip
        assert flags.count("--resource-type") == 4  # data tests, models, seeds, snapshots
        assert "unit_test" not in flags


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


class Receiver:
    """A webhook endpoint on localhost (http.server in a thread): the JSON bodies it got."""

    def __init__(self) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch):
    from trialscreen.notify import SMTP_HOST_ENV, WEBHOOK_URL_ENV

    endpoint = Receiver()
    monkeypatch.setenv(WEBHOOK_URL_ENV, endpoint.url)
    monkeypatch.delenv(SMTP_HOST_ENV, raising=False)
    yield endpoint
    endpoint.close()


def _dag_test(dag, day: date, **conf: object):
    for task in dag.tasks:
        task.retries = 0  # a failure fails now, not after back-off
    started = time.perf_counter()
    run = dag.test(logical_date=datetime(day.year, day.month, day.day, 2, tzinfo=UTC), **conf)
    print(f"\ndag.test() {day}: {time.perf_counter() - started:.1f} s")  # reported, not asserted
    return run


def _phi(warehouse: Path) -> set[str]:
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(warehouse) as wh:
        rows = wh.query(
            "select patient_mrn, family_name, given_name, cast(birth_date as varchar) "
            "from intermediate.int_patients"
        )
    mrns = {r[0] for r in rows if r[0]}
    names = {v for r in rows for v in r[1:3] if v and len(v) >= 5}
    dates = {r[3] for r in rows if r[3]}
    assert len(mrns) > 100
    return mrns | names | dates


TRIALS = ["axiom", str(REPO / "include" / "trials" / "examples" / "second_trial.yml")]


@pytest.fixture(scope="session")
def cli_run(population: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`trialscreen run` on the population for two trials; its warehouse directory."""
    from trialscreen import pseudonym
    from trialscreen.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("cli_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(pseudonym.KEY_ENV, "dag-test-key")
        mp.delenv("TRIALSCREEN_ALERT_WEBHOOK_URL", raising=False)
        mp.delenv("TRIALSCREEN_ALERT_SMTP_HOST", raising=False)
        started = time.perf_counter()
        cli = run_pipeline(population, SCREENING_DATE, out / "cli.duckdb", TRIALS, out / "reports")
        print(f"\ntrialscreen run: {time.perf_counter() - started:.1f} s")  # not asserted
    assert cli.published, cli.message
    return out


@pytest.fixture(scope="session")
def published_run(request, dagbag, population: Path, cli_run: Path, tmp_path_factory):
    """The suite's one full ``dag.test()`` night (two trials, 120 patients): its DAG run, its
    warehouse directory and the task logs it printed (read from pytest's own output capture,
    which holds what the run wrote; None under ``-s``). Every assertion on a published night
    reads this run."""
    from trialscreen import pseudonym

    capture = request.config.pluginmanager.getplugin("capturemanager")
    capturing = capture is not None and capture.is_globally_capturing()
    if capturing:
        capture.read_global_capture()  # drop what came before the run
    out = tmp_path_factory.mktemp("dag_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(pseudonym.KEY_ENV, "dag-test-key")
        mp.delenv("TRIALSCREEN_ALERT_WEBHOOK_URL", raising=False)
        mp.delenv("TRIALSCREEN_ALERT_SMTP_HOST", raising=False)
        run = _dag_test(
            dagbag.dags["trialscreen_nightly"],
            SCREENING_DATE,
            run_conf={
                "trials": TRIALS,
                "input_dir": str(population),
                "warehouse": str(out / "dag.duckdb"),
                "reports_dir": str(out / "dag_reports"),
            },
        )
    logs = "".join(capture.read_global_capture()) if capturing else None
    (out / "task_logs.txt").write_text(logs or "")  # kept with the run, to read on failure
    return run, out, logs


def test_dag_run_publishes_what_the_cli_publishes(published_run, cli_run: Path) -> None:
    run, out, _ = published_run
    assert run.state == "success"
    assert not gate_blocked(run)
    assert _marts(out / "dag.duckdb") == _marts(cli_run / "cli.duckdb")


def test_dag_run_screens_every_trial_of_its_params_in_one_run(published_run) -> None:
    from trialscreen.warehouse import Warehouse

    _, out, _ = published_run
    with Warehouse.connect(out / "dag.duckdb") as wh:
        trials = {r[0] for r in wh.query("select distinct trial_id from marts.screening_results")}
    assert trials == {"axiom", "example_second"}  # both trials of the params, one run


def test_dag_run_writes_the_report_and_the_dbt_docs(published_run) -> None:
    _, out, _ = published_run
    assert (out / "dag_reports" / "latest" / "report.html").exists()
    docs = (out / "dag_reports" / "dbt_docs" / "index.html").read_text()
    assert "criterion_evaluations" in docs  # the analysts' lineage and column docs
    # a published night records what the site was generated from: the next night with the
    # same project, releases and warehouse keeps it (tests/dags/test_dag_docs.py)
    from trialscreen.dag_docs import docs_current, docs_key

    assert docs_current(out / "dag_reports", docs_key(out / "dag.duckdb"))


def test_every_model_task_reports_its_model_from_the_one_build(published_run, dagbag) -> None:
    run, _, logs = published_run
    dag = dagbag.dags["trialscreen_nightly"]
    models = [
        t.task_id for t in dag.tasks if t.task_id.startswith("dbt.") and "producer" not in t.task_id
    ]
    assert len(models) > 40
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert {states[m] for m in models} == {"success"}
    if logs is not None:  # one dbt build: the producer's (no model task ran its own)
        assert logs.count("Running with dbt=") == 1


def test_dag_run_task_logs_carry_no_phi(published_run) -> None:
    _, out, task_logs = published_run
    if task_logs is None:
        pytest.skip("the task logs are read from pytest's output capture (run without -s)")
    assert "prepare_build" in task_logs and len(task_logs) > 10_000
    tokens = set(re.findall(r"[A-Za-z0-9-]+", task_logs))
    leaked = sorted(_phi(out / "dag.duckdb") & tokens)
    assert leaked == [], f"PHI in Airflow task logs: {len(leaked)} values"


def _build_commands(logs: str) -> list[str]:
    """The dbt command lines the producer logged (Cosmos: "Trying to run the command")."""
    return re.findall(r"Trying to run the command:\s*\n\s*(\[[^\n]*\])", logs)


def _build_state(warehouse: Path) -> list[tuple]:
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(warehouse) as wh:
        return wh.query(
            "select full_refresh, after_load_id, through_load_id, reason "
            "from audit.build_state order by built_at"
        )


def _xcom(run, task_id: str) -> Any:
    """What a task of a ``dag.test()`` run returned (its XCom, from the metadata DB)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, key="return_value", task_ids=task_id, dag_ids=run.dag_id
        )
        return XComModel.deserialize_value(session.scalars(query).one())


def _copy_warehouse(source: Path, target: Path) -> None:
    for suffix in ("", ".wal"):  # the file and its write-ahead log, if not checkpointed
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")


@pytest.fixture(scope="session")
def second_night(request, dagbag, population: Path, published_run, cli_run: Path, tmp_path_factory):
    """The night after the published run, through the DAG on (a copy of) its warehouse and
    through `trialscreen run` on (a copy of) the CLI's, from the same increment drop (a fifth
    of the patients with new results): (DAG run, its warehouse, CLI warehouse, task logs).
    ``reports`` is marked done (the dbt docs cost CPU and are checked on the first night)."""
    from trialscreen import pseudonym
    from trialscreen.pipeline import run_pipeline
    from trialscreen.synth.increment import increment

    out = tmp_path_factory.mktemp("second_night")
    day = date.fromordinal(SCREENING_DATE.toordinal() + 1)
    increment(population, out / "drop", day, share=0.2)
    dag_wh, cli_wh = out / "dag.duckdb", out / "cli.duckdb"
    _copy_warehouse(published_run[1] / "dag.duckdb", dag_wh)
    _copy_warehouse(cli_run / "cli.duckdb", cli_wh)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    capturing = capture is not None and capture.is_globally_capturing()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(pseudonym.KEY_ENV, "dag-test-key")
        mp.delenv("TRIALSCREEN_ALERT_WEBHOOK_URL", raising=False)
        mp.delenv("TRIALSCREEN_ALERT_SMTP_HOST", raising=False)
        cli = run_pipeline(out / "drop", day, cli_wh, TRIALS, out / "cli_reports")
        assert cli.published, cli.message
        if capturing:
            capture.read_global_capture()  # drop what came before the run
        run = _dag_test(
            dagbag.dags["trialscreen_nightly"],
            day,
            run_conf={
                "trials": TRIALS,
                "input_dir": str(out / "drop"),
                "warehouse": str(dag_wh),
                "reports_dir": str(out / "dag_reports"),
            },
            mark_success_pattern="reports",
        )
    logs = "".join(capture.read_global_capture()) if capturing else None
    return run, dag_wh, cli_wh, logs


def test_the_first_night_rebuilds_whole_with_the_seeds(published_run) -> None:
    _, out, logs = published_run
    assert _build_state(out / "dag.duckdb") == [
        (True, None, _build_state(out / "dag.duckdb")[0][2], "no earlier build")
    ]
    if logs is not None:
        (command,) = _build_commands(logs)
        assert "'--full-refresh'" in command
        assert "--exclude=resource_type:seed" not in command  # the seeds load
        assert "incremental_after_load_id" not in command


def test_each_task_of_ours_pushes_one_xcom(published_run) -> None:
    """A task returning a dict pushes its return_value only, not one more XCom per key
    (Airflow infers multiple_outputs from a dict return annotation): every XCom is a call
    to the API server, and nothing reads the per-key copies."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run, _, _ = published_run
    with create_session() as session:
        rows = session.query(XComModel.task_id, XComModel.key).filter_by(run_id=run.run_id)
        keys: dict[str, set[str]] = {}
        for task_id, key in rows:
            keys.setdefault(task_id, set()).add(key)
    ours = {t: k for t, k in keys.items() if not t.startswith("dbt.")}
    assert {"ingest_fhir", "prepare_build", "validate", "publish", "notify"} <= set(ours)
    assert all(k == {"return_value"} for k in ours.values()), ours
    assert _xcom(run, "validate")["success"] is True  # readers pull the one return_value


def test_the_next_night_builds_incrementally_as_the_cli_does(second_night, published_run) -> None:
    """The DAG's second night continues from its first night's build (no --full-refresh, no
    seeds, the loads after the first night's) and publishes what `trialscreen run` publishes
    after the same two nights."""
    run, dag_wh, cli_wh, logs = second_night
    assert run.state == "success"
    first, second = _build_state(dag_wh)
    assert first[0] is True
    assert second == (False, first[2], second[2], None)  # from the first night's last load
    assert second[2] > first[2]  # through tonight's loads
    assert _xcom(run, "record_build") == {"recorded": True, "full_refresh": False, "reason": None}
    assert _build_state(cli_wh)[-1][:2] == (False, _build_state(cli_wh)[0][2])
    assert _marts(dag_wh) == _marts(cli_wh)
    assert _marts(dag_wh) != _marts(published_run[1] / "dag.duckdb")  # the night changed them
    if logs is not None:
        (command,) = _build_commands(logs)
        assert "'--full-refresh'" not in command
        assert "--exclude=resource_type:seed" in command
        assert f"incremental_after_load_id: {first[2]}" in command


BLOCKING_MARTS_SUITE = """\
suite: marts
description: a gate that blocks whatever the marts hold (test)
assets:
  - name: marts.screening_results
    table: ${marts}.screening_results
    required: true
    columns: {trial_id: string}
    expectations:
      - type: expect_table_row_count_to_be_between
        kwargs: {max_value: 0}
        blocking: true
        description: no screening result may exist (a gate made to block)
"""


def test_blocked_gate_sends_one_alert_without_phi(
    dagbag, cli_run: Path, population: Path, receiver: Receiver, tmp_path: Path, monkeypatch
) -> None:
    """The next night on yesterday's warehouse (the CLI's), with a suite that blocks: one
    alert, counts and ids only; nothing published. dbt is marked done (its candidate tables
    are the last build's), so the gate runs on real tables without a second build."""
    from trialscreen import pseudonym
    from trialscreen.validate import EXPECTATIONS_DIR, EXPECTATIONS_DIR_ENV

    warehouse = tmp_path / "night2.duckdb"
    _copy_warehouse(cli_run / "cli.duckdb", warehouse)
    suites = tmp_path / "expectations"
    suites.mkdir()
    shutil.copy(EXPECTATIONS_DIR / "feeds.yml", suites / "feeds.yml")
    (suites / "marts.yml").write_text(BLOCKING_MARTS_SUITE)
    monkeypatch.setenv(EXPECTATIONS_DIR_ENV, str(suites))
    monkeypatch.setenv(pseudonym.KEY_ENV, "dag-test-key")
    before, built = _marts(warehouse), _build_state(warehouse)

    run = _dag_test(
        dagbag.dags["trialscreen_nightly"],
        date(2026, 11, 21),
        run_conf={
            "trials": ["axiom"],
            "input_dir": str(population),
            "warehouse": str(warehouse),
            "reports_dir": str(tmp_path / "reports"),
            "full_refresh": True,
        },
        mark_success_pattern=r"dbt\..*",
    )
    assert run.state == "failed"
    assert run.get_task_instance("quality_gate").state == "failed"
    assert gate_blocked(run)  # `trialscreen demo` exits 3 on it, as `trialscreen run` does
    assert _marts(warehouse) == before  # yesterday's tables stay published
    # the param asked for a rebuild; dbt marked done, no build ran: the plan is not recorded
    assert _xcom(run, "prepare_build")["plan"]["reason"] == "full refresh asked for"
    assert _xcom(run, "prepare_build")["full_refresh"] is True
    assert _xcom(run, "record_build")["recorded"] is False
    assert _build_state(warehouse) == built
    assert len(receiver.received) == 1, [p.get("kind") for p in receiver.received]
    alert = receiver.received[0]
    assert alert["kind"] == "gate_blocked"
    assert alert["run_id"] == run.run_id
    assert alert["trials"] == ["axiom"]
    assert alert["counts"]["blocking_failures"] == 1
    assert set(alert) == {
        "source",
        "text",
        "kind",
        "run_id",
        "trials",
        "summary",
        "counts",
        "sent_at",
    }
    tokens = set(re.findall(r"[A-Za-z0-9-]+", json.dumps(alert)))
    assert not (_phi(warehouse) & tokens)


def test_failed_run_sends_one_failed_alert(dagbag, receiver: Receiver, tmp_path: Path) -> None:
    """A run that fails at its first step (an unknown trial): the DAG's failure callback."""
    run = _dag_test(
        dagbag.dags["trialscreen_nightly"],
        date(2026, 11, 22),
        run_conf={
            "trials": ["no_such_trial"],
            "input_dir": str(tmp_path),
            "warehouse": str(tmp_path / "wh.duckdb"),
            "reports_dir": str(tmp_path / "reports"),
        },
    )
    assert run.state == "failed"
    assert not gate_blocked(run)  # a failure before the gate is not a blocked gate (exit 1)
    assert [a["kind"] for a in receiver.received] == ["failed"]
    assert "start_run" in receiver.received[0]["summary"]
    assert receiver.received[0]["trials"] == []  # an unknown trial is not named


def test_the_failed_alert_names_the_task_that_failed_first(dagbag) -> None:
    """Airflow hands the DAG's failure callback the failed task that ended last (``reports``
    runs after a failed ``publish``; model tasks fail after a failed build); the alert names
    the first. ``dag.test()`` runs DAG callbacks without the scheduler's channel for task
    states, so this checks the choice on the real DAG's graph."""
    dag = dagbag.dags["trialscreen_nightly"]
    callback = dag.on_failure_callback
    callback = callback[0] if isinstance(callback, list) else callback
    first_failed = sys.modules[type(callback).__module__].first_failed
    assert first_failed(dag, {"publish", "reports"}) == "publish"
    producer = "dbt.dbt_producer_watcher"
    assert first_failed(dag, {"dbt.worklist_run", "notify", producer}) == producer
    assert first_failed(dag, {"reports", "start_run", "dbt.stg_config__trials_run"}) == "start_run"
    assert first_failed(dag, {"quality_gate", "reports"}) == "quality_gate"  # gate alert only
    assert first_failed(dag, set()) is None
