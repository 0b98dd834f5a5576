"""TrialScreen nightly pre-screening: ingest → dbt (Cosmos) → validate → publish → reports.

Thin by design: every task calls one function of ``trialscreen.pipeline`` or
``trialscreen.notify`` (the same ones ``trialscreen run`` calls); each takes the run id from
its context, so XComs carry only what flows (dbt settings, the gate's counts, the published
tables). dbt runs as an astronomer-cosmos task group (watcher mode: one ``dbt build``) from the
precompiled manifest (``dbt_project/target/manifest.json``, written by ``make install`` /
``trialscreen manifest``), so parsing this file never calls dbt.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pendulum
from airflow.sdk import BaseNotifier, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    PRODUCER_WATCHER_DONE_TASK_ID,
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    SeedRenderingBehavior,
    TestBehavior,
)

from trialscreen import config
from trialscreen.dbt_output import DBT_PYTHON_ENV, DBT_WRAPPER
from trialscreen.transform import SEEDS_KEPT

if TYPE_CHECKING:
    from airflow.sdk.bases.decorator import Task

# trialscreen.toml ($TRIALSCREEN_CONFIG, else ./trialscreen.toml) fills what the environment
# leaves unset, validated as the CLI does (docs/configuration.md); a wrong value fails the import
config.setup()

REPO = Path(os.environ.get("TRIALSCREEN_HOME", Path(__file__).resolve().parents[1]))
DBT_DIR = REPO / "dbt_project"
MANIFEST = Path(os.environ.get("TRIALSCREEN_DBT_MANIFEST", DBT_DIR / "target" / "manifest.json"))
SCHEDULE = os.environ.get("TRIALSCREEN_SCHEDULE", "0 2 * * *")
TIMEZONE = os.environ.get("TRIALSCREEN_TIMEZONE", "UTC")
WAREHOUSE = os.environ.get("TRIALSCREEN_WAREHOUSE_URL", str(REPO / "trialscreen.duckdb"))
DROPS = os.environ.get("TRIALSCREEN_DROPS_DIR", str(REPO / "drops"))
REPORTS = os.environ.get("TRIALSCREEN_REPORTS_DIR", str(REPO / "reports"))
DBT_TARGET = "postgres" if WAREHOUSE.startswith("postgres") else "duckdb"
GATE_TASK = "quality_gate"
# Cosmos passes --resource-type model/seed/snapshot to the producer's build when tests are not
# rendered as tasks; this adds the data tests back, so the one build runs what `trialscreen run`
# builds (not the unit tests: transform.NIGHTLY_EXCLUDED)
TEST_RESOURCES = ("--resource-type", "test")
# tonight's build plan (prepare_build's XCom, rendered when the producer runs: Cosmos renders
# full_refresh and dbt_cmd_flags, not the other operator args): --full-refresh and the seeds
# only on a full rebuild, as `trialscreen run` builds (pipeline.build)
PLAN = "ti.xcom_pull(task_ids='prepare_build')"
FULL_REFRESH = "{{ " + PLAN + "['full_refresh'] }}"
BUILD_ENV = "{{ " + PLAN + "['env'] }}"
# on an incremental night the seeds stay, and so do the data tests that read only seeds: the
# flags `trialscreen run` builds with (transform.SEEDS_KEPT), each as one `--flag=value`
# argument; empty flags on a full rebuild
SEEDS_FLAGS = tuple(
    "{{ '' if " + PLAN + "['full_refresh'] else '" + flag + "=" + value + "' }}"
    for flag, value in zip(SEEDS_KEPT[::2], SEEDS_KEPT[1::2], strict=True)
)
# the models whose state a recorded plan vouches for (docs/decisions.md, "Incremental nights")
INCREMENTAL_MODELS = ("int_observations", "int_conditions", "int_medications")
# the dbt of this environment (Airflow and TrialScreen share it), run as the producer's process
# through trialscreen/bin/dbt: Cosmos writes dbt's messages to the task log and to XComs, and a
# node's error quotes the database's text, which may quote a record; the wrapper takes those
# texts out of dbt's JSON lines (statuses untouched) and keeps them in restricted.build_errors
# (docs/decisions.md, "dbt's errors"). It runs this interpreter (DBT_PYTHON_ENV)
DBT_EXECUTABLE = str(DBT_WRAPPER)

DOC = """
### TrialScreen nightly

Screens every patient for the configured trials (param `trials`, one or several) **as of
the run's logical date** (the screening date), from the feed files in the drop directory.

0. `check_missed_nights` alerts when scheduled nights before this one have no run at all.
1. `start_run` checks the trial definitions and configuration, records the run.
2. `ingest_*` lands new FHIR / HL7 / CSV files (content-hash registry: re-delivered files
   are skipped; bad records go to `quarantine.records`).
3. `prepare_build` pseudonymizes new MRNs, writes the trial definitions to `config.*` and
   plans the build as `trialscreen run` does: incremental from the last successful build's
   loads, or a full rebuild (param `full_refresh`, a changed fingerprint, no earlier build,
   the last build unpublished).
4. `dbt` (Cosmos, watcher mode) runs one `dbt build` into the `*_candidate` schemas
   (`--full-refresh` and the seeds only on a full rebuild); one task per model shows how
   each went. `record_build` then records the plan in `audit.build_state`.
5. `validate` runs the Great Expectations suites on the feeds and the candidate tables;
   `quality_gate` fails the run at once (no retries, one alert) when a blocking
   expectation failed: nothing is published and yesterday's tables stay.
6. `publish` swaps the candidate tables in (one transaction, each table lock waited for at
   most `TRIALSCREEN_PUBLISH_LOCK_TIMEOUT`).
7. `reports` writes the screening report, and after a published night the dbt docs site
   when the dbt project, the releases or the warehouse changed since the site was made;
   `notify` sends the `published` alert (counts only).

Alerts (webhook, SMTP: `TRIALSCREEN_ALERT_*`, docs/decisions.md "Alerts") carry counts and
run ids, never PHI: a failed run, a blocked gate, a published run, missed nights.

A run with no new files still runs: the screening date moves every night, so windows
(labs within 28 days…) and ages change even when no data arrived.
"""


def _context() -> tuple[dict[str, Any], pendulum.Date, str]:
    """The run's params, screening date and Airflow run id.

    The screening date is the logical date taken in the hospital time zone
    (``trialscreen.settings.hospital_timezone``), not the UTC ``ds``: a run scheduled at
    00:30 in UTC+2 screens as of its own local day.
    """
    from airflow.sdk import get_current_context

    from trialscreen.settings import hospital_timezone

    context = get_current_context()
    logical = context.get("logical_date")
    if logical is None:  # a run triggered without a logical date: its ds (UTC) is all there is
        parsed = pendulum.parse(context["ds"])
        assert isinstance(parsed, pendulum.DateTime)  # ds is YYYY-MM-DD: a DateTime
        logical = parsed
    local = pendulum.instance(logical).in_timezone(hospital_timezone())
    return context["params"], local.date(), context["run_id"]


def _warehouse(params: dict[str, Any]) -> str:
    return str(params["warehouse"])


class AlertNotifier(BaseNotifier):
    """Airflow's notifier interface over ``trialscreen.notify.send`` (webhook, SMTP: whatever
    the deployment configured). ``kind="failed"`` is the DAG's failure callback: one alert per
    failed run, unless the quality gate failed it (the gate's own task callback alerted).
    ``kind="gate_blocked"`` is the gate task's failure callback. Counts and ids only."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (no template fields). BaseNotifier's own asks the context's DAG
        for a Jinja environment, which the scheduler's serialized DAG that ``dag.test()``
        hands to DAG callbacks does not have (Airflow 3.3)."""

    def notify(self, context: Any) -> None:
        from trialscreen.notify import Alert, send, trial_ids

        ti = context.get("ti") or context.get("task_instance")
        failed_task = str(getattr(ti, "task_id", "") or "")  # Airflow's: the last to fail
        if self.kind == "failed":
            failed_task = _first_failed_task(context) or failed_task
        if self.kind == "failed" and failed_task == GATE_TASK:
            return  # the gate's task callback sent gate_blocked for this run
        params = context.get("params") or {}
        trials = trial_ids(list(params.get("trials") or []))
        run_id = context.get("run_id")
        if self.kind == "gate_blocked":
            exc = context.get("exception")
            counts = dict(getattr(exc, "counts", {}) or {})
            summary = (
                f"quality gate blocked publication: {counts.get('blocking_failures', 0)} "
                "blocking expectations failed, nothing published"
            )
        else:
            counts = {"failed_tasks": 1}
            task = re.sub(r"[^A-Za-z_.]", "_", failed_task)[:64] or "unknown"
            summary = f"nightly run failed in task {task}"  # publish may have run before
        send(Alert(self.kind, run_id, trials, summary, counts))


def _first_failed_task(context: Any) -> str | None:
    """The run's failed task that failed first: the one with no failed task upstream of it
    (every task downstream of a failure ran after it; of unrelated failures, the one with
    fewest tasks upstream). Airflow's DAG failure callback hands over the failed task that
    ended last, which after a failed ``publish`` is ``reports`` (it runs ``all_done``) and
    after a failed build is a model task. None when the task states cannot be read: the
    scheduler's DAG processor reads them over its supervisor channel; ``dag.test()`` runs
    DAG callbacks without one, and the alert then names the task Airflow handed over."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    dag, run_id = context.get("dag"), context.get("run_id")
    if dag is None or run_id is None:
        return None
    try:
        states = RuntimeTaskInstance.get_task_states(dag_id=dag.dag_id, run_ids=[run_id])
    except NameError:  # no supervisor channel in this process (dag.test)
        return None
    failed = {t for t, state in states.get(run_id, {}).items() if str(state) == "failed"}
    return first_failed(dag, failed)


def first_failed(dag: Any, failed: set[str]) -> str | None:
    """Of the failed task ids, the one that failed first (see ``_first_failed_task``)."""
    known = {t for t in failed if dag.has_task(t)}
    upstream = {t: set(dag.get_task(t).get_flat_relative_ids(upstream=True)) for t in known}
    roots = [t for t in known if not upstream[t] & known]
    return min(roots, key=lambda t: (len(upstream[t]), t), default=None)


class GateBlocked(AirflowFailException):
    """Blocking expectations failed: fail the run now, without retries (one alert)."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        super().__init__(
            f"quality gate blocked publication: {counts['blocking_failures']} blocking "
            "expectation(s) failed, nothing published (see Data Docs)"
        )


@dag(
    dag_id="trialscreen_nightly",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["trialscreen", "screening", "phi"],
    render_template_as_native_obj=True,
    on_failure_callback=AlertNotifier("failed"),
    default_args={
        "owner": "trialscreen",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    },
    params={
        "trials": Param(
            ["axiom"],
            type="array",
            items={"type": "string"},
            minItems=1,
            description="trial ids or YAML paths, screened in one run",
        ),
        "input_dir": Param(DROPS, type="string", description="drop dir with fhir/ hl7/ csv/"),
        "warehouse": Param(WAREHOUSE, type="string", description="DuckDB path or postgresql://"),
        "reports_dir": Param(REPORTS, type="string", description="where reports are written"),
        "full_refresh": Param(
            False,
            type="boolean",
            description="rebuild the incremental models whole (trialscreen run --full-refresh)",
        ),
    },
)
def trialscreen_nightly() -> None:
    @task
    def check_missed_nights() -> list[str]:
        from trialscreen.notify import Alert, missed_nights, send, trial_ids

        params, screening_date, run_id = _context()
        missed = missed_nights(_warehouse(params), _scheduled_dates(screening_date))
        if missed:
            send(
                Alert(
                    "missed",
                    run_id,
                    trial_ids(params["trials"]),
                    f"{len(missed)} scheduled nights before this run have no run at all",
                    {"missed_nights": len(missed)},
                )
            )
        return [d.isoformat() for d in missed]

    @task
    def start_run() -> str:
        from trialscreen.pipeline import start_run as start

        params, screening_date, run_id = _context()
        return start(_warehouse(params), screening_date, list(params["trials"]), run_id)

    # multiple_outputs=False on every task that returns a dict: Airflow infers it from the
    # dict return annotation and pushes one more XCom per key (an ingest task wrote 13, each
    # a call to the API server); readers pull the one return_value
    @task(multiple_outputs=False)
    def detect_new_files() -> dict[str, int]:
        from trialscreen.ingest import new_file_counts

        params, _, _ = _context()
        return new_file_counts(_warehouse(params), Path(params["input_dir"]))

    def ingest(feed: str) -> Task[[], dict[str, object]]:  # a task factory
        @task(task_id=f"ingest_{feed}", multiple_outputs=False)
        def _ingest() -> dict[str, object]:
            from trialscreen.pipeline import ingest_feed

            params, _, run_id = _context()
            counts = ingest_feed(_warehouse(params), Path(params["input_dir"]), feed, run_id)
            return counts.as_row()

        return _ingest

    @task(multiple_outputs=False)
    def prepare_build() -> dict[str, object]:
        from dataclasses import asdict

        from trialscreen.pipeline import (
            dbt_vars,
            plan_build,
            plan_vars,
            prepare_build,
            transform_url,
        )
        from trialscreen.transform import dbt_target
        from trialscreen.warehouse import run_lock

        params, screening_date, run_id = _context()
        with run_lock(_warehouse(params)):
            prepare_build(_warehouse(params), list(params["trials"]))
            # decided once per run: the dbt build and record_build read it from this XCom
            plan = plan_build(_warehouse(params), run_id, bool(params.get("full_refresh")))
        # dbt connects as the transformer role when the deployment names one (compose does:
        # TRIALSCREEN_TRANSFORM_URL, the same URL validate, publish and reports use); the
        # engine is a deployment setting: Cosmos renders its profile target at parse time
        target = dbt_target(transform_url(_warehouse(params)))
        if target.target != DBT_TARGET:
            raise ValueError(
                f"params.warehouse is a {target.target} warehouse but this deployment builds "
                f"dbt on {DBT_TARGET} (set TRIALSCREEN_WAREHOUSE_URL to change the engine)"
            )
        # XComs are stored in the metadata DB and shown in the UI: no password in them; dbt
        # reads TRIALSCREEN_PG_PASSWORD from the worker's environment (compose sets it)
        env = {k: v for k, v in target.env.items() if k != "TRIALSCREEN_PG_PASSWORD"}
        env[DBT_PYTHON_ENV] = sys.executable  # the interpreter trialscreen/bin/dbt runs
        return {
            "env": env,
            "vars": {**dbt_vars(screening_date, run_id), **plan_vars(plan)},
            "full_refresh": plan.full_refresh,
            "plan": asdict(plan),
        }

    @task(multiple_outputs=False)
    def record_build(settings: dict[str, Any]) -> dict[str, object]:
        from airflow.sdk import get_current_context

        from trialscreen.pipeline import BuildPlan
        from trialscreen.pipeline import record_build as record

        params, _, run_id = _context()
        plan = BuildPlan(**settings["plan"])
        # the producer's own word that tonight's build built the incremental models: dbt
        # tasks marked done by hand (no build) record nothing, and the next night plans
        # from the last recorded build (loads again from there, or rebuilds whole)
        built = _build_reported(get_current_context()["ti"])
        if built:
            record(_warehouse(params), run_id, plan)
        else:
            logging.getLogger(__name__).warning(
                "build state not recorded: no dbt build of this run reported the incremental "
                "models (dbt tasks marked done?); the next night plans from the last record"
            )
        return {"recorded": built, "full_refresh": plan.full_refresh, "reason": plan.reason}

    @task(multiple_outputs=False)
    def validate() -> dict[str, object]:
        from trialscreen.pipeline import validate as run_validation

        params, screening_date, run_id = _context()
        outcome = run_validation(
            _warehouse(params), Path(params["reports_dir"]), run_id, screening_date
        )
        return {
            "success": outcome.success,
            "blocking_failures": len(outcome.blocking_failures),
            "warnings": len(outcome.warnings),
            "expectations": outcome.expectations_evaluated,
        }

    @task(task_id=GATE_TASK, retries=0, on_failure_callback=AlertNotifier("gate_blocked"))
    def quality_gate(validation: dict[str, Any]) -> None:
        from trialscreen.pipeline import finish_run

        params, _, run_id = _context()
        if not validation["success"]:
            finish_run(_warehouse(params), run_id, "failed", message="quality gate failed")
            raise GateBlocked(
                {k: int(validation[k]) for k in ("blocking_failures", "warnings", "expectations")}
            )

    @task(multiple_outputs=False)
    def publish() -> dict[str, int]:
        from trialscreen.pipeline import publish as do_publish

        params, _, run_id = _context()
        return do_publish(_warehouse(params), run_id)

    @task(trigger_rule="all_done")
    def reports() -> str:
        from airflow.sdk import get_current_context

        from trialscreen.dag_docs import refresh_dbt_docs
        from trialscreen.pipeline import write_reports

        params, _, run_id = _context()
        reports_dir = Path(params["reports_dir"])
        report = write_reports(_warehouse(params), reports_dir, run_id)
        # the dbt docs site after a published night only, and only when the project,
        # releases or warehouse changed since it was made (docs/decisions.md, "The dbt docs
        # site only when the project changed"); publish's XCom is there when tonight published
        published = get_current_context()["ti"].xcom_pull(task_ids="publish") is not None
        refresh_dbt_docs(_warehouse(params), reports_dir, published)
        return str(report)

    @task(multiple_outputs=False)
    def notify(published: dict[str, int]) -> dict[str, int]:
        from trialscreen.notify import Alert, send, status_counts, trial_ids
        from trialscreen.pipeline import candidate_counts

        params, _, run_id = _context()
        counts = {"tables": len(published), **status_counts(candidate_counts(_warehouse(params)))}
        send(
            Alert(
                "published",
                run_id,
                trial_ids(params["trials"]),
                f"published {len(published)} tables",
                counts,
            )
        )
        return counts

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            dbt_project_path=DBT_DIR,
            manifest_path=MANIFEST,
            project_name="trialscreen",
            install_dbt_deps=False,  # the project has no packages: nothing to fetch
            # dbt's connection settings for this run, from prepare_build's XCom: Cosmos hands
            # env_vars to every dbt operator as its templated `env`, so the template renders at
            # run time, to a dict (render_template_as_native_obj); nothing reads it at parse
            # time (LoadMode.DBT_MANIFEST runs no dbt ls). Typed dict[str, str] in Cosmos 1.15:
            # a template string is what its operators' `env` field takes
            env_vars=cast(dict[str, str], BUILD_ENV),
        ),
        profile_config=ProfileConfig(
            profile_name="trialscreen",
            target_name=DBT_TARGET,
            profiles_yml_filepath=DBT_DIR / "profiles.yml",
        ),
        # one `dbt build` (the producer task: models and data tests, and on a full
        # rebuild --full-refresh and the seeds, as `trialscreen run` builds); one task per
        # model reports that model's result (docs/decisions.md, "One dbt build in the DAG",
        # "The DAG builds incrementally")
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            # dbt runs in its own process: Cosmos reads its info-level JSON lines (one result
            # line per node) and pushes each node's status from this task while dbt's threads
            # run on (docs/decisions.md, "One dbt build in the DAG")
            invocation_mode=InvocationMode.SUBPROCESS,
            dbt_executable_path=DBT_EXECUTABLE,
            setup_operator_args={
                # a retried producer skips (it never runs a second build), and its skip
                # would skip every model task: the model tasks retry their own model instead
                "retries": 0,
                "full_refresh": FULL_REFRESH,
                "dbt_cmd_flags": [*TEST_RESOURCES, *SEEDS_FLAGS],
            },
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.NONE,  # tests run in the build, not as tasks
            seed_rendering_behavior=SeedRenderingBehavior.NONE,  # seeds too
            emit_datasets=False,  # Airflow assets per model: noise for a single nightly DAG
        ),
        # per-run vars come from prepare_build's XCom (templated at run time)
        operator_args={
            "append_env": True,  # dbt's process gets the worker's environment (PG password...)
            "vars": "{{ " + PLAN + "['vars'] }}",
        },
    )
    _models_after_the_build(dbt)

    ingested = [ingest(feed)() for feed in ("fhir", "hl7", "csv")]
    settings = prepare_build()
    check_missed_nights() >> start_run() >> detect_new_files() >> ingested[0]
    ingested[0] >> ingested[1] >> ingested[2] >> settings >> dbt
    checked = validate()
    dbt >> record_build(settings) >> checked
    gate = quality_gate(checked)
    published = publish()
    gate >> published >> reports()
    notify(published)


def _models_after_the_build(group: DbtTaskGroup) -> None:
    """The model tasks of the dbt group that have no model upstream start when the build
    has finished, passed or failed (skipped when it never ran), not beside it: each then
    reads its model's result at once instead of waiting in a worker slot or the triggerer,
    and ``dag.test()`` (one task at a time) never runs a model task before the build."""
    producer = group.get_child_by_label(PRODUCER_WATCHER_TASK_ID)
    done = group.get_child_by_label(PRODUCER_WATCHER_DONE_TASK_ID)
    ids = {t.task_id for t in group.iter_tasks()}
    for child in group.iter_tasks():
        if child in (producer, done) or child.upstream_task_ids & ids:
            continue
        producer >> child
        child.trigger_rule = "one_done"  # the build ran (passed or failed): read its result


def cosmos_status_xcom_key(unique_id: str) -> str:
    """The XCom key under which Cosmos's watcher producer reports a dbt node's status.

    The one use of a Cosmos private name in the repository: Cosmos has no public API for the
    producer's per-node results (checked against astronomer-cosmos 1.15.1, whose model tasks
    read the same key through this function). tests/dags/test_cosmos_private_api.py fails
    when the name moves or the key it gives changes."""
    from cosmos.operators._watcher.state import get_status_xcom_key

    return str(get_status_xcom_key(unique_id))


def _build_reported(ti: Any) -> bool:
    """Whether this run's producer reported every incremental model built (its per-model
    status XComs, which the model tasks read too)."""
    producer = f"dbt.{PRODUCER_WATCHER_TASK_ID}"
    for model in INCREMENTAL_MODELS:
        key = cosmos_status_xcom_key(f"model.trialscreen.{model}")
        status = ti.xcom_pull(task_ids=producer, key=key) or {}
        if status.get("status") != "success":
            return False
    return True


def _scheduled_dates(screening_date: pendulum.Date, nights: int = 14) -> list[pendulum.Date]:
    """The screening dates of the schedule's runs in the ``nights`` days before this one."""
    from croniter import croniter  # type: ignore[import-untyped]  # an Airflow dependency

    zone = pendulum.timezone(TIMEZONE)
    end = pendulum.datetime(screening_date.year, screening_date.month, screening_date.day, tz=zone)
    points = croniter(SCHEDULE, end.subtract(days=nights))
    dates: set[pendulum.Date] = set()
    while (point := pendulum.instance(points.get_next(datetime), tz=zone)) < end:
        dates.add(point.date())
    return sorted(dates)


trialscreen_nightly()
